"""Uploaded documents, stored content-addressed (sha256) under the data dir, each of the media type
its content shows, never only its name."""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO

import puremagic

from domain.errors import DocumentTooLarge, FieldError, InvalidInput
from domain.validation import DOCUMENT_MEDIA_TYPES, MAX_DOCUMENT_BYTES

CHUNK = 1024 * 1024
# What a document's first bytes must be for the name it carries: PDF header, PNG signature, OLE2 compound
# file (Word 97-2003), zip (Office Open XML, whose parts must then include word/).
SIGNATURES = {
    ".pdf": b"%PDF-",
    ".png": b"\x89PNG\r\n\x1a\n",
    ".doc": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
    ".docx": b"PK\x03\x04",
}
KINDS = {".pdf": "a PDF", ".png": "a PNG image", ".doc": "a Word 97-2003 document", ".docx": "a Word document"}


def what_it_is(head: bytes) -> str:
    """What content looks like, for a refusal: puremagic's best guess, if it has one."""
    try:
        guess = puremagic.magic_string(head)[0]
    except (puremagic.PureError, IndexError, ValueError):
        return "content of no type caselog knows"
    return f"{guess.name} ({guess.mime_type})" if guess.mime_type else guess.name or "content of no type caselog knows"


def mismatch(ext: str, path: Path) -> str | None:
    """What the file at ``path`` holds when that is not what its extension ``ext`` says, else None."""
    with open(path, "rb") as f:
        head = f.read(8192)
    if not head.startswith(SIGNATURES[ext]):
        return what_it_is(head)
    if ext == ".docx":
        try:
            with zipfile.ZipFile(path) as archive:
                if not any(n.startswith("word/") for n in archive.namelist()):
                    return "a zip archive with no word/ part"
        except zipfile.BadZipFile:
            return "a damaged zip archive"
    return None


class DocumentStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return len(sha256) == 64 and self.path(sha256).exists()

    def misnamed(self, sha256: str, name: str) -> str | None:
        """What the stored document ``sha256`` holds when a reference names it as another kind, else None."""
        ext = name[name.rfind("."):].lower() if "." in name else ""
        if ext not in SIGNATURES or not self.exists(sha256):
            return None  # an unknown extension or document is refused by its own rule
        if (holds := mismatch(ext, self.path(sha256))) is not None:
            return f"{name!r} is not {KINDS[ext]}: the uploaded document holds {holds}"
        return None

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
            if (holds := mismatch(ext, Path(tmp))) is not None:
                raise InvalidInput(FieldError("file", f"{name!r} is not {KINDS[ext]}: it holds {holds}"))
            sha = digest.hexdigest()
            target = self.path(sha)
            target.parent.mkdir(exist_ok=True)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return {"document_id": sha, "name": name, "sha256": sha, "media_type": DOCUMENT_MEDIA_TYPES[ext], "size": size}
