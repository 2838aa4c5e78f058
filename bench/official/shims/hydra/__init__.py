# A stand-in for hydra-core, which Debian 12 does not package: just enough for fairseq's
# argparse entry points (fairseq_cli.train / preprocess) to build their config. The real
# hydra composes YAML defaults; fairseq's argparse path only needs the dataclass defaults
# plus its generated "key=value" overrides, which experimental.compose applies.
