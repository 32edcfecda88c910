"""Uploaded documents, stored content-addressed (sha256) under the data dir."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from domain.errors import DocumentTooLarge, FieldError, InvalidInput
from domain.validation import DOCUMENT_MEDIA_TYPES, MAX_DOCUMENT_BYTES

CHUNK = 1024 * 1024


class DocumentStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return len(sha256) == 64 and self.path(sha256).exists()

    def put(self, name: str, stream: BinaryIO) -> dict:
        ext = name[name.rfind("."):].lower() if "." in name else ""
        if ext not in DOCUMENT_MEDIA_TYPES:
            raise InvalidInput(FieldError("file", f"{name!r}: documents must be .doc, .docx, .pdf or .png"))
        digest, size = hashlib.sha256(), 0
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if size > MAX_DOCUMENT_BYTES:
                        raise DocumentTooLarge(FieldError("file", f"{name!r} is larger than 25 MB ({MAX_DOCUMENT_BYTES} bytes)"))
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise InvalidInput(FieldError("file", "the file is empty"))
            sha = digest.hexdigest()
            target = self.path(sha)
            target.parent.mkdir(exist_ok=True)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return {"document_id": sha, "name": name, "sha256": sha, "media_type": DOCUMENT_MEDIA_TYPES[ext], "size": size}
