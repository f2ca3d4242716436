"""Batched TorchScript scoring: windows of many entities, grouped by model, one call each.

Models are files ``<model_dir>/<entity>.pt`` exported by ``omnistream fit``; the file name
routes, so one model may serve several entities through copies or links. The store re-scans
the folder when asked and loads only files whose sha256 is new: a replaced file is hot-reloaded,
a removed one unloaded. A model announced on the ``models`` topic (by the transfer service) is
loaded at once if its file's sha256 is the announced one; from then on only a file with that
sha256 serves the entity, whatever lies in the folder.

A TorchScript file is code: loading one runs what its author wrote. With an ``Allowlist`` (the
worker's default), a folder file loads only if its sha256 is listed there or announced on the
``models`` topic (whose writers the broker's ACLs decide); any other file is refused, logged
and counted.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from omnistream.detectors.export import LAST_STEP, ModelInfo, load, optimise_for_inference
from omnistream.detectors.reduce import reduce_scores
from omnistream.stream import telemetry

log = logging.getLogger(__name__)
SHA256 = re.compile(r"[0-9a-f]{64}")


class Allowlist:
    """The sha256 sums of trusted model files, from a file in ``sha256sum`` format (``<hex>
    <name>`` per line, ``#`` comments); re-read when it changes. No file: nothing is listed."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self.sums: frozenset[str] = frozenset()
        self._stamp: tuple[int, int] | None = None

    def refresh(self) -> bool:
        """Re-read the file if it changed; return whether the list changed. A file that is gone
        lists nothing (said once); one that cannot be read keeps the sums read before."""
        if self.path is None:
            return False
        try:
            stat = self.path.stat()
            stamp = (stat.st_size, stat.st_mtime_ns)
            if stamp == self._stamp:
                return False
            text = self.path.read_text()
        except FileNotFoundError:
            if self._stamp != (-1, -1):
                log.error("model allowlist %s does not exist: only announced models load", self.path)
            changed, self.sums, self._stamp = bool(self.sums), frozenset(), (-1, -1)
            return changed
        except (OSError, UnicodeDecodeError) as exc:
            log.error("model allowlist %s cannot be read (%s): keeping the %d sums read before", self.path, exc,
                      len(self.sums))
            return False
        sums = set()
        for number, line in enumerate(text.splitlines(), 1):
            word = line.split("#", 1)[0].split()[:1]
            if word and SHA256.fullmatch(word[0].lower()):
                sums.add(word[0].lower())
            elif word:
                log.warning("model allowlist %s line %d is not a sha256 sum: ignored", self.path, number)
        changed, self.sums, self._stamp = frozenset(sums) != self.sums, frozenset(sums), stamp
        return changed

    def __contains__(self, sha256: str) -> bool:
        return sha256 in self.sums


@dataclass
class LoadedModel:
    module: torch.jit.ScriptModule
    info: ModelInfo
    sha256: str
    path: Path
    device: str
    center: np.ndarray | None  # per-metric values for points missing from a whole window


def pick_device(name: str = "auto") -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA device is available")
    return name


class OtherKind(ValueError):
    """A model file of the other input kind: another store of the worker serves it."""


class ModelStore:
    """Entity (or system) -> loaded model, from a folder of exported TorchScript files. A store
    serves one input ``kind``: entity models, or system models (``<system>.pt``), which are kept
    unfrozen so that their call-graph buffer can follow the topology."""

    def __init__(self, folder: Path, device: str = "cpu", allowlist: Allowlist | None = None, kind: str = "entity"):
        """``allowlist`` None trusts every file in ``folder`` (offline tools on one's own models)."""
        self.kind = kind
        self.folder = Path(folder)
        self.device = device
        self.allowlist = allowlist
        self.refused: dict[str, str] = {}  # entity -> sha256 of its file, neither listed nor announced
        self.models: dict[str, LoadedModel] = {}
        self._stamps: dict[str, tuple[int, int]] = {}  # entity -> (size, mtime) of its file when read
        self.announced: dict[str, str] = {}  # entity -> the sha256 its last announcement named
        self._lock = threading.Lock()  # folder scans and announcements come from different threads
        self.quarantined: dict[str, str] = {}  # sha256 -> why the model was set aside

    def refresh(self) -> list[str]:
        with self._lock:
            return self._refresh()

    def _refresh(self) -> list[str]:
        """Load new or changed model files and forget removed ones; return the entities whose
        model changed.

        A file is hashed only when its size or modification time changed, and each distinct
        content is loaded once however many entities it serves (copies of a cluster's model).
        """
        changed: list[str] = []
        if self.allowlist is not None and self.allowlist.refresh():
            for key in self.refused:  # look at the refused files again
                self._stamps.pop(key, None)
            for key, model in list(self.models.items()):  # a sum taken off the list: its model goes
                if model.path.parent == self.folder and not self._trusted(key, model.sha256, model.path):
                    del self.models[key]
                    changed.append(key)
        if not self.folder.is_dir():
            return changed
        present = set()
        by_sha = {m.sha256: m for m in self.models.values()}
        for path in sorted(self.folder.glob("*.pt")):
            key = path.stem  # the file name routes: <entity>.pt serves that entity
            present.add(key)
            try:
                stat = path.stat()
                stamp = (stat.st_size, stat.st_mtime_ns)
                current = self.models.get(key)
                if current and self._stamps.get(key) == stamp:
                    continue
                data, sha = _read(path)
                if sha in self.quarantined:  # failed on a batch once: not again, until replaced
                    self._stamps[key] = stamp
                    continue
                if key in self.announced and sha != self.announced[key]:
                    if not (current and current.sha256 == self.announced[key]):
                        log.error("model file %s has sha256 %s, not the announced %s: not loaded", path, sha[:12],
                                  self.announced[key][:12])
                    self._stamps[key] = stamp
                    continue
                if not self._trusted(key, sha, path):
                    self._stamps[key] = stamp
                    continue
                if not (current and current.sha256 == sha):
                    by_sha[sha] = self.models[key] = by_sha.get(sha) or self._load(path, data, sha)
                    changed.append(key)
                    log.info("model %s v%s serves %s (sha256 %s)", self.models[key].info.name,
                             self.models[key].info.version, key, sha[:12])
                self._stamps[key] = stamp
            except OtherKind:  # the other store's file
                self._stamps[key] = stamp
            except Exception as exc:  # a broken file must not stop the worker
                log.error("skipping model %s: %s", path, exc)
        for key in sorted(set(self.models) - present
                          - {k for k, m in self.models.items() if m.path.parent != self.folder}):
            del self.models[key]
            self._stamps.pop(key, None)
            changed.append(key)
            log.info("model file of %s removed: its points now go unscored", key)
        for key in set(self.refused) - present:
            del self.refused[key]
        return changed

    def _trusted(self, key: str, sha: str, path: Path) -> bool:
        """A folder file may load if the store trusts its folder, or its sha256 is announced for
        the entity or listed in the allowlist; a refusal is logged once per file content."""
        if self.allowlist is None or self.announced.get(key) == sha or sha in self.allowlist:
            self.refused.pop(key, None)
            return True
        if self.refused.get(key) != sha:
            self.refused[key] = sha
            telemetry.MODELS_REFUSED.inc()
            log.error("model file %s (sha256 %s) is neither in the allowlist %s nor announced on the models topic: "
                      "not loaded (a TorchScript file runs code in the worker)", path, sha[:12],
                      self.allowlist.path or "(none set)")
        return False

    def quarantine(self, model: LoadedModel, reason: str) -> list[str]:
        """Set aside a model that failed to score: the entities it served go unscored (and ask
        for a new model) until another file or announcement replaces it. Returns those entities."""
        with self._lock:
            self.quarantined[model.sha256] = reason
            served = sorted(e for e, m in self.models.items() if m.sha256 == model.sha256)
            for entity in served:
                del self.models[entity]
        log.error("model %s (sha256 %s) quarantined after failing to score: %s; it served %s", model.path,
                  model.sha256[:12], reason, ", ".join(served) or "nothing")
        return served

    def announce(self, entity: str, uri: str, sha256: str) -> bool:
        """Load the announced model file for ``entity`` if its sha256 is the announced one;
        otherwise keep serving what it served (and say why). Returns whether the model changed."""
        with self._lock:
            return self._announce(entity, uri, sha256)

    def _announce(self, entity: str, uri: str, sha256: str) -> bool:
        if sha256 in self.quarantined:
            log.error("announced model of %s (sha256 %s) was quarantined (%s): not loaded", entity, sha256[:12],
                      self.quarantined[sha256])
            return False
        current = self.models.get(entity)
        if current and current.sha256 == sha256:
            self.announced[entity] = sha256
            return False
        path = Path(uri)
        try:
            data, sha = _read(path)
        except OSError as exc:
            log.error("announced model of %s cannot be read (%s): keeping the current one", entity, exc)
            return False
        if sha != sha256:
            log.error("announced model of %s at %s has sha256 %s, not the announced %s: keeping the current one",
                      entity, path, sha[:12], sha256[:12])
            return False
        try:
            model = self._load(path, data, sha)
        except Exception as exc:  # a corrupt file must not stop the worker
            log.error("announced model of %s at %s cannot be loaded (%s): keeping the current one", entity, path, exc)
            return False
        self.announced[entity] = sha256
        self.models[entity] = model
        self.refused.pop(entity, None)
        if path.parent == self.folder:
            stat = path.stat()
            self._stamps[entity] = (stat.st_size, stat.st_mtime_ns)
        log.info("announced model %s v%s (%s) serves %s (sha256 %s)", model.info.name, model.info.version,
                 model.info.strategy, entity, sha[:12])
        return True

    def _load(self, path: Path, data: bytes, sha: str) -> LoadedModel:
        module, info = load(data, self.device)
        if info.input_kind != self.kind:
            raise OtherKind(f"{info.name} reads {info.input_kind} windows; this store serves {self.kind} models")
        fast = optimise_for_inference(module) if self.kind == "entity" else module
        return LoadedModel(fast, info, sha, path, self.device, module_center(module))

    def get(self, entity: str) -> LoadedModel | None:
        return self.models.get(entity)


def _read(path: Path) -> tuple[bytes, str]:
    """A model file's bytes and their sha256: a model is hashed and loaded from the same bytes,
    read once, so that the file cannot be swapped between the check and the load."""
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def module_center(module: torch.nn.Module) -> np.ndarray | None:
    """The per-metric centre the model standardises with (``center``, or ``standardise.center``
    of the detectors' scoring modules): the value of a metric missing from a whole window."""
    for owner in (module, getattr(module, "standardise", None)):
        center = getattr(owner, "center", None) if owner is not None else None
        if isinstance(center, torch.Tensor):
            return center.detach().cpu().numpy()
    return None


@dataclass
class WindowScores:
    """Scores of the newest points of one window."""

    point: np.ndarray  # (k,) one score per new point
    per_metric: np.ndarray  # (k, M) per-metric scores of those points


# Windows per model call. On CPU, calls of a few hundred windows keep the activations in
# cache and score about 1.6x more windows per second than one call of thousands.
SCORE_CHUNK = 256


@torch.inference_mode()
def score_batch(model: LoadedModel, windows: np.ndarray, newest: list[int]) -> list[WindowScores]:
    """Score (B, W, M) windows in calls of at most SCORE_CHUNK (CPU) windows; keep the
    ``newest[i]`` last points of each."""
    x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(model.device)
    chunk = len(x) if model.device != "cpu" else SCORE_CHUNK
    # Only the last step wanted: the cheaper method, where the model file has it.
    last_only = max(newest, default=1) == 1 and hasattr(model.module, LAST_STEP)
    call = getattr(model.module, LAST_STEP) if last_only else model.module
    z = torch.cat([call(part) for part in x.split(max(1, chunk))]).float().cpu().numpy()
    tail = z[:, -max(newest, default=1):]
    points = reduce_scores(tail, model.info.reduction)  # the model's own reduction, for the whole batch
    return [WindowScores(points[i, -k:], tail[i, -k:]) for i, k in enumerate(newest)]
