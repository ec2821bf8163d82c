"""What ``moe2 validate`` knows: every kind of file moe2 reads, told apart by name and content
(:mod:`.detect`) and checked by the reader of the command that takes it (:mod:`.kinds`)."""

from moe2_cli.validation.detect import UnknownKind, detect
from moe2_cli.validation.kinds import KINDS, NAMES, Checked, FileKind, check_file, kind_of

__all__ = ["KINDS", "NAMES", "Checked", "FileKind", "UnknownKind", "check_file", "detect", "kind_of"]
