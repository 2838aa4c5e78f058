import ast, contextlib, dataclasses
from omegaconf import OmegaConf, DictConfig
from hydra.core.config_store import ConfigStore

@contextlib.contextmanager
def initialize(config_path=None, **kw):
    yield

def _node(n):
    if dataclasses.is_dataclass(n):
        return OmegaConf.structured(n)
    return OmegaConf.create(n)

def _value(s):
    if s == "null":
        return None
    if len(s) >= 2 and s[0] == "'" and s[-1] == "'":
        return s[1:-1].replace("\\'", "'")
    try:
        return ast.literal_eval(s)
    except Exception:
        return s

def compose(config_name, overrides=(), strict=False):
    repo = ConfigStore.instance().repo
    cfg = _node(repo[(None, config_name)])
    OmegaConf.set_struct(cfg, False)
    for o in overrides:
        key, _, raw = o.partition("=")
        if "." not in key:
            if (key, raw) in repo:
                cfg[key] = _node(repo[(key, raw)])
                OmegaConf.set_struct(cfg[key], False)
            else:
                cfg[key] = raw
            continue
        head = key.split(".")[0]
        if head in cfg and not isinstance(cfg[head], DictConfig):
            cfg[head] = OmegaConf.create({})
        try:
            OmegaConf.update(cfg, key, _value(raw), merge=False)
        except Exception:
            OmegaConf.update(cfg, key, raw, merge=False)
    return cfg
