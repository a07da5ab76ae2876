"""Where derived model files (distilled tables, quantized graphs) are cached on disk."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def cached_path(kind: str, model_dir: Path, suffix: str) -> Path:
    """The cache file for `kind` derived from the model in `model_dir`.

    The name carries a hash of the model file's path, size and mtime, so a reinstalled or
    replaced model never reuses a stale derivative.
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    st = (model_dir / "model.safetensors").stat()
    key = f"{model_dir.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(base) / "carebot" / f"{kind}-{digest}{suffix}"


def store(path: Path, write: Callable[[Path], object]) -> bool:
    """Write a cache file through `write(tmp)` and rename it into place; False (logged) when
    the cache is not writable.

    The rename makes the file appear whole: several workers starting at once may each build
    it, and none ever reads a half-written one.
    """
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        tmp.replace(path)
    except OSError as exc:
        log.warning("cannot cache %s: %s", path, exc)
        tmp.unlink(missing_ok=True)
        return False
    return True
