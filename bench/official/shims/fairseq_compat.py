"""Run a 2021 fairseq entry point on Debian 12 (Python 3.11, NumPy 1.24, omegaconf 2.2).

    python3 fairseq_compat.py fairseq_cli.train ARGS...

Three incompatibilities, each patched without changing what fairseq computes:
- Python 3.11 rejects unhashable dataclass instances as field defaults; fairseq's configs
  use them. Such a default's class is given object.__hash__ before the check.
- NumPy 1.24 removed np.float / np.int / ... aliases; they are restored to the same types.
- omegaconf 2.2 renamed the function fairseq patches to store argparse Namespaces in a
  DictConfig (is_primitive_type -> is_primitive_type_annotation).
"""
import dataclasses
import runpy
import sys

_get_field = dataclasses._get_field


def _hashable_default(cls, name, typ, *rest):
    d = cls.__dict__.get(name, dataclasses.MISSING)
    if isinstance(d, dataclasses.Field):
        d = d.default
    if dataclasses.is_dataclass(d) and not isinstance(d, type) and type(d).__hash__ is None:
        type(d).__hash__ = object.__hash__
    return _get_field(cls, name, typ, *rest)


dataclasses._get_field = _hashable_default

import numpy as np  # noqa: E402

np.float, np.int, np.bool, np.object, np.long = float, int, bool, object, int

from omegaconf import _utils as _omegaconf_utils  # noqa: E402


class _NoObjectCheck:
    def __enter__(self):
        self.saved = _omegaconf_utils.is_primitive_type_annotation
        _omegaconf_utils.is_primitive_type_annotation = lambda _: True

    def __exit__(self, *exc):
        _omegaconf_utils.is_primitive_type_annotation = self.saved


import fairseq.dataclass.utils as _fairseq_dc_utils  # noqa: E402

_fairseq_dc_utils.omegaconf_no_object_check = _NoObjectCheck

module = sys.argv[1]
sys.argv = [module] + sys.argv[2:]
runpy.run_module(module, run_name="__main__")
