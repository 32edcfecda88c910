"""Uploaded documents, stored content-addressed (the sha256 of their plaintext) under the data dir, each of
the media type its content shows, never only its name; and who uploaded each one under which name
(``caselog_document_uploads``), so that a request can name a document by its id alone and a provider
attaches only documents it, or a provider sharing its worklist with it, uploaded.

With ``CASELOG_CIPHER_KEY`` a document is encrypted (AES-GCM, ``infra/store/cipher.py``) before it
touches the disk: an upload is checked in memory (25 MB at most) and only its ciphertext is written.
Files are 0600 in 0700 directories whatever the umask."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import BinaryIO, Iterable

import puremagic

from domain.errors import DocumentTooLarge, FieldError, InvalidInput, NotPermitted
from domain.validation import DOCUMENT_MEDIA_TYPES, MAX_DOCUMENT_BYTES, extension_of
from infra.settings import private
from infra.store.cipher import Keyring, open_document, seal_document, write_private
from infra.store.database import Database

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


def mismatch(ext: str, content: bytes) -> str | None:
    """What ``content`` holds when that is not what its extension ``ext`` says, else None."""
    head = content[:8192]
    if not head.startswith(SIGNATURES[ext]):
        return what_it_is(head)
    if ext == ".docx":
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as archive:
                if not any(n.startswith("word/") for n in archive.namelist()):
                    return "a zip archive with no word/ part"
        except zipfile.BadZipFile:
            return "a damaged zip archive"
    return None


class DocumentNotYours(NotPermitted):
    """A provider named a document that neither it nor a provider sharing its worklist with it uploaded."""

    rule = "document-not-yours"
    title = "Document not yours to attach"

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


class DocumentStore:
    def __init__(self, root: Path, db: Database, keyring: Keyring | None = None):
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        private(self.root)
        self.db = db
        self.keyring = keyring
        self._kinds: dict[tuple[str, str], str | None] = {}
        with db.schema() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS caselog_document_uploads (sha256 TEXT NOT NULL,"
                        " uploader_kind TEXT NOT NULL, uploader_id TEXT NOT NULL, name TEXT NOT NULL,"
                        " media_type TEXT NOT NULL, size BIGINT NOT NULL, uploaded_at TEXT NOT NULL,"
                        " PRIMARY KEY (sha256, uploader_kind, uploader_id))")

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return len(sha256) == 64 and self.path(sha256).exists()

    def read(self, sha256: str) -> bytes:
        """A stored document's content (decrypted), checked against its name."""
        content, _ = open_document(self.keyring, self.path(sha256).read_bytes())
        if hashlib.sha256(content).hexdigest() != sha256:
            raise ValueError(f"document {sha256}: its content does not hash to its name")
        return content

    def misnamed(self, sha256: str, name: str) -> str | None:
        """What the stored document ``sha256`` holds when a reference names it as another kind, else None."""
        ext = extension_of(name)
        if ext not in SIGNATURES or ((sha256, ext) not in self._kinds and not self.exists(sha256)):
            return None  # an unknown extension or document is refused by its own rule (one read before: it exists)
        if (holds := self._holds(sha256, ext)) is not None:
            return f"{name!r} is not {KINDS[ext]}: the uploaded document holds {holds}"
        return None

    def _holds(self, sha256: str, ext: str) -> str | None:
        """``mismatch`` of a stored document, read once: its content never changes (its name is its
        hash), so neither does the answer (kept for the last few thousand asked)."""
        key = (sha256, ext)
        try:
            return self._kinds[key]
        except KeyError:
            pass
        if len(self._kinds) >= 4096:
            self._kinds.clear()
        answer = self._kinds[key] = mismatch(ext, self.read(sha256))
        return answer  # (not read back: another thread may have cleared the dict meanwhile)

    def put(self, name: str, stream: BinaryIO, *, uploader: dict, at: str) -> dict:
        """Store the content and record the upload (the same user uploading it again renames it)."""
        ext = extension_of(name)
        if ext not in DOCUMENT_MEDIA_TYPES:
            raise InvalidInput(FieldError("file", f"{name!r}: documents must be .doc, .docx, .pdf or .png"))
        content = bytearray()
        while chunk := stream.read(CHUNK):
            content += chunk
            if len(content) > MAX_DOCUMENT_BYTES:
                why = f"{name!r} is larger than 25 MB ({MAX_DOCUMENT_BYTES} bytes)"
                raise DocumentTooLarge(FieldError("file", why))
        size = len(content)
        if size == 0:
            raise InvalidInput(FieldError("file", "the file is empty"))
        if (holds := mismatch(ext, bytes(content))) is not None:
            raise InvalidInput(FieldError("file", f"{name!r} is not {KINDS[ext]}: it holds {holds}"))
        sha = hashlib.sha256(content).hexdigest()
        target = self.path(sha)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        private(target.parent)
        write_private(target, seal_document(self.keyring, bytes(content)))
        media_type = DOCUMENT_MEDIA_TYPES[ext]
        with self.db.transaction() as cur:
            cur.execute("INSERT INTO caselog_document_uploads (sha256, uploader_kind, uploader_id, name, media_type,"
                        " size, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                        " ON CONFLICT (sha256, uploader_kind, uploader_id) DO UPDATE SET name = excluded.name,"
                        " media_type = excluded.media_type, size = excluded.size, uploaded_at = excluded.uploaded_at",
                        (sha, uploader["kind"], uploader["id"], name, media_type, size, at))
        return {"document_id": sha, "name": name, "sha256": sha, "media_type": media_type, "size": size}

    def uploads(self, sha256s: Iterable[str]) -> dict[str, list[dict]]:
        """Every recorded upload of these documents, newest first, by sha256."""
        wanted = sorted(set(sha256s))
        found: dict[str, list[dict]] = {sha: [] for sha in wanted}
        if not wanted:
            return found
        with self.db.read() as cur:
            rows = cur.execute("SELECT sha256, uploader_kind, uploader_id, name, media_type, size"
                               f" FROM caselog_document_uploads WHERE sha256 IN ({', '.join('?' for _ in wanted)})"
                               " ORDER BY uploaded_at DESC, uploader_id", wanted).fetchall()
        for sha, kind, who, name, media_type, size in rows:
            found[sha].append({"uploader": {"kind": kind, "id": who}, "name": name, "media_type": media_type,
                               "size": int(size)})
        return found

    def references(self, documents: list, *, user: dict | None = None, colleagues: Iterable[str] = (),
                   objects_uploaded: bool = True) -> list[dict]:
        """The documents a request attaches, as stored references. One named by its id alone takes
        the name, media type and size it was uploaded with (the user's own upload first).

        ``user`` (a provider) may attach only what it uploaded or what a provider among
        ``colleagues`` (those sharing their worklist with it) uploaded; without ``user``
        (reviewers, admin, the operator's CLI) any uploaded document. Refused, recording nothing:
        a document nobody uploaded (InvalidInput), one the user may not attach (DocumentNotYours).
        ``objects_uploaded=False`` (the CLI) lets a full object through unchecked, as before."""
        colleagues = set(colleagues)
        me = (user or {}).get("kind"), (user or {}).get("id")

        def by_user(upload: dict) -> bool:
            return (upload["uploader"]["kind"], upload["uploader"]["id"]) == me

        def usable(upload: dict) -> bool:
            by = upload["uploader"]
            return user is None or by_user(upload) or (by["kind"] == "provider" and by["id"] in colleagues)

        known = self.uploads(doc if isinstance(doc, str) else doc["sha256"] for doc in documents)
        resolved, unknown, foreign = [], [], []
        for i, doc in enumerate(documents):
            by_id = isinstance(doc, str)
            sha = doc if by_id else doc["sha256"]
            uploads = known.get(sha, [])
            mine = sorted((u for u in uploads if usable(u)), key=lambda u: not by_user(u))
            if not by_id and not objects_uploaded:
                resolved.append(doc)
            elif not uploads and (by_id or not self.exists(sha)):
                field = f"documents[{i}]" if by_id else f"documents[{i}].sha256"
                unknown.append(FieldError(field, f"no uploaded document has the id {sha}; POST /documents first"))
            elif user is not None and not mine:
                foreign.append(FieldError(f"documents[{i}]", f"document {sha} was uploaded by someone else; a provider"
                                          " attaches what it uploaded or a provider sharing its worklist with it did"))
            elif by_id:
                first = mine[0]
                resolved.append({"document_id": sha, "name": first["name"], "media_type": first["media_type"],
                                 "size": first["size"], "sha256": sha})
            elif (wrong := self.misnamed(sha, doc["name"])) is not None:
                unknown.append(FieldError(f"documents[{i}].name", wrong))
            else:
                resolved.append(doc)
        if unknown:
            raise InvalidInput(unknown)
        if foreign:
            raise DocumentNotYours(foreign)
        return resolved
