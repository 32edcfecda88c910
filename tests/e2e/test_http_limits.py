"""What a hostile or broken HTTP client meets at a really served `caselog serve`: bodies capped on the
bytes actually read (chunked or not, before anything buffers them), connections that stall closed,
and uploads typed by their content, not their name. Nothing a refused request sent is recorded."""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from infra.http.limits import MAX_JSON_BODY, MAX_UPLOAD_BODY
from infra.demo.samples import later, request
from tests.support import free_port, start_serve

MiB = 1024 * 1024
START = datetime(2026, 11, 22, 14, tzinfo=timezone.utc)
TIMEOUT = 1.0  # the header and body timeouts the server is started with, in seconds


@pytest.fixture
def served(tmp_path):
    port = free_port()
    spool = tmp_path / "spool"
    spool.mkdir()
    env = {**os.environ, "CASELOG_DATA_DIR": str(tmp_path / "data"), "CASELOG_CLOCK": "manual",
           "CASELOG_CLOCK_START": START.isoformat(), "TMPDIR": str(spool),
           "CASELOG_HTTP_HEADER_TIMEOUT": str(TIMEOUT), "CASELOG_HTTP_BODY_TIMEOUT": str(TIMEOUT)}
    env.pop("CASELOG_DATABASE_URL", None)
    proc = start_serve(env, port, tmp_path / "serve.log")
    server = Served(f"http://127.0.0.1:{port}", port, proc, env, tmp_path / "data", spool)
    server.provider = server.token("--role", "provider", "--sub", "dr-doe", "--npi", "1234567893")
    yield server
    proc.terminate()
    proc.wait(timeout=20)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


class Served:
    def __init__(self, base: str, port: int, proc: subprocess.Popen, env: dict, data: Path, spool: Path):
        self.base, self.port, self.proc, self.env, self.data, self.spool = base, port, proc, env, data, spool
        self.provider = ""  # minted once the server has made the deployment's secret

    def token(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "infra.cli", "token", *args], env=self.env, capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()

    def auth(self, **headers: str) -> dict:
        return {"Authorization": f"Bearer {self.provider}", **headers}

    def position(self) -> int:
        return httpx.get(f"{self.base}/healthz").json()["position"]

    def upload(self, name: str, content: bytes) -> httpx.Response:
        return httpx.post(f"{self.base}/documents", files={"file": (name, content, "application/octet-stream")},
                          headers=self.auth())

    def stored_documents(self) -> list[Path]:
        return [p for p in (self.data / "documents").rglob("*") if p.is_file()]

    def data_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.data.rglob("*") if p.is_file())

    def spooled_bytes(self) -> int:
        """Bytes in the files the server holds open in its temporary directory (unlinked or not)."""
        total = 0
        fds = Path(f"/proc/{self.proc.pid}/fd")
        for fd in list(fds.iterdir()) if fds.exists() else []:
            try:
                if os.readlink(fd).startswith(str(self.spool)):
                    total += os.stat(fd).st_size
            except OSError:
                pass  # closed meanwhile
        return total

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


class Source:
    """A request body produced piece by piece (so httpx sends it chunked, with no Content-Length),
    counting how much of it the server let through before answering."""

    def __init__(self, head: bytes, fill: int, tail: bytes = b""):
        self.head, self.fill, self.tail, self.sent = head, fill, tail, 0

    def __iter__(self):
        for piece in self.pieces():
            self.sent += len(piece)
            yield piece

    def pieces(self):
        yield self.head
        left = self.fill
        while left > 0:
            yield b" " * min(256 * 1024, left)
            left -= 256 * 1024
        yield self.tail


def problem(r: httpx.Response, status: int, rule: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"].endswith("/" + rule) and body["status"] == status and body["title"] and body["detail"]
    return body


def read_to_close(s: socket.socket) -> bytes:
    answer = b""
    while piece := s.recv(65536):
        answer += piece
    return answer


def one_response(s: socket.socket) -> bytes:
    """One whole response (headers and its Content-Length of body) from a kept-alive connection."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += s.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    fields = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:])
    length = int(fields[b"content-length"])
    while len(body) < length:
        body += s.recv(65536)
    return answer


def closed_within(s: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``s`` (it may answer first), or None if it still held it."""
    start = time.monotonic()
    s.settimeout(seconds)
    try:
        while s.recv(65536):
            pass
    except (socket.timeout, TimeoutError):
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - start


# ---- small real documents of each accepted kind ------------------------------------------------

PDF = (b"%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n2 0 obj <</Type /Pages /Kids [] /Count 0>> endobj\n"
       b"trailer <</Root 1 0 R>>\n%%EOF\n")


def png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    pixels = zlib.compress(b"\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def zipped(**parts: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in parts.items():
            archive.writestr(name.replace("__", "/"), text)
    return out.getvalue()


DOCX = zipped(**{"[Content_Types].xml": "<Types/>", "word__document.xml": "<w:document/>"})
DOC = bytes.fromhex("d0cf11e0a1b11ae1") + bytes(504)  # an OLE2 compound file header, as Word 97-2003 writes
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(120)
HTML = b"<!DOCTYPE html><html><body><script>document.location='https://example.invalid'</script></body></html>"


# ---- body caps ----------------------------------------------------------------------------------

def test_chunked_json_past_1_mib_is_refused_unread_and_records_nothing(served):
    doc = served.upload("notes.pdf", PDF)
    assert doc.status_code == 201, doc.text
    body = request("cigna-commercial/dme", date_of_service=later(START, 14), documents=[doc.json()])
    small = Source(httpx.Request("POST", "/", json=body).content, 0)
    r = httpx.post(f"{served.base}/cases", content=small, headers=served.auth(**{"content-type": "application/json"}))
    assert r.status_code == 201, r.text  # chunked JSON under the cap is served as before
    before = served.position()

    body["clinical"] = {"history": ""}
    json_text = httpx.Request("POST", "/", json=body).content
    split = json_text.index(b'"history":""') + len(b'"history":"')
    huge = Source(json_text[:split], 50 * MiB, json_text[split:])  # a valid submission, 50 MB long
    r = httpx.post(f"{served.base}/cases", content=huge, headers=served.auth(**{"content-type": "application/json"}),
                   timeout=30)
    assert problem(r, 413, "body-too-large")["detail"] == f"JSON bodies are at most {MAX_JSON_BODY} bytes"
    assert huge.sent < 16 * MiB, f"the server read {huge.sent} bytes of a body it refuses after 1 MiB"
    assert served.position() == before

    declared = httpx.post(f"{served.base}/cases", content=b"{" + b" " * (MAX_JSON_BODY + 1) + b"}",
                          headers=served.auth(**{"content-type": "application/json"}))
    problem(declared, 413, "body-too-large")
    assert served.position() == before


def test_an_upload_past_25_mb_is_refused_before_it_is_spooled_or_stored(served):
    before_stored, before_data = served.stored_documents(), served.data_bytes()
    boundary = b"caselog-test-boundary"
    head = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="mri.pdf"\r\n'
            b"Content-Type: application/pdf\r\n\r\n%PDF-1.4\n")
    upload = Source(head, 100 * MiB, b"\r\n--" + boundary + b"--\r\n")
    spooled, done = [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            spooled[0] = max(spooled[0], served.spooled_bytes())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        r = httpx.post(f"{served.base}/documents", content=upload, timeout=30,
                       headers=served.auth(**{"content-type": f"multipart/form-data; boundary={boundary.decode()}"}))
    finally:
        done.set()
        watcher.join()
    body = problem(r, 413, "document-too-large")
    assert body["errors"][0]["field"] == "file"
    assert upload.sent < MAX_UPLOAD_BODY + 16 * MiB, f"the server read {upload.sent} bytes of a 100 MB upload"
    assert spooled[0] <= MAX_UPLOAD_BODY, f"{spooled[0]} bytes spooled"
    assert served.stored_documents() == before_stored
    assert served.data_bytes() - before_data < 2 * MiB

    # Content-Length already too large: answered from the headers, before a byte of the body
    with served.connect() as s:
        s.sendall(b"POST /documents HTTP/1.1\r\nHost: caselog\r\nAuthorization: Bearer " + served.provider.encode()
                  + b"\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 314572800\r\n\r\n")
        answer = read_to_close(s)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"document-too-large" in answer
    assert served.stored_documents() == before_stored


# ---- read timeouts ------------------------------------------------------------------------------

def test_connections_that_stall_are_closed_within_the_timeouts(served):
    start = time.monotonic()
    slow_headers = [served.connect() for _ in range(50)]
    for s in slow_headers:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: caselog\r\nX-Slow: ")
    for _ in range(3):  # then a byte at a time, never finishing
        time.sleep(TIMEOUT / 4)
        for s in slow_headers:
            s.sendall(b"a")
    for s in slow_headers:
        assert closed_within(s, 3 * TIMEOUT) is not None, "a connection that never finished its headers was held"
        s.close()
    assert time.monotonic() - start < 4 * TIMEOUT

    start = time.monotonic()
    idle = served.connect()  # opened, nothing sent
    stalled = served.connect()  # headers done, the body never finishes
    stalled.sendall(b"POST /cases HTTP/1.1\r\nHost: caselog\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n{\"policy\": ")
    dripping = served.connect()  # a chunked body a byte at a time, far below 1 KiB/s, never stalling a whole second
    dripping.sendall(b"POST /cases HTTP/1.1\r\nHost: caselog\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
    try:
        while time.monotonic() - start < 5 * TIMEOUT:
            dripping.sendall(b"1\r\n \r\n")
            time.sleep(TIMEOUT / 5)
    except OSError:
        pass  # closed under it
    for s in (idle, stalled, dripping):
        assert closed_within(s, 0.1) is not None, "a connection with a stalled or dripping request was held"
        s.close()

    with served.connect() as s:  # a client that keeps pace is served, twice on one connection
        for _ in range(2):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: caselog\r\n\r\n")
            assert one_response(s).startswith(b"HTTP/1.1 200 ")
            time.sleep(TIMEOUT * 0.6)


def test_a_timeout_caselog_cannot_use_exits_2_naming_the_variable(tmp_path):
    for variable, value in (("CASELOG_HTTP_HEADER_TIMEOUT", "soon"), ("CASELOG_HTTP_BODY_TIMEOUT", "0")):
        env = {**os.environ, "CASELOG_DATA_DIR": str(tmp_path), variable: value}
        env.pop("CASELOG_DATABASE_URL", None)
        out = subprocess.run([sys.executable, "-m", "infra.cli", "serve", "--port", str(free_port())], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and variable in out.stderr and "Traceback" not in out.stderr, out.stderr



# ---- media types from the content ---------------------------------------------------------------

def test_uploads_are_typed_by_their_content_not_their_name(served):
    accepted = {"notes.pdf": (PDF, "application/pdf"), "scan.png": (png(), "image/png"),
                "letter.doc": (DOC, "application/msword"),
                "letter.docx": (DOCX, "application/vnd.openxmlformats-officedocument.wordprocessingml.document")}
    for name, (content, media_type) in accepted.items():
        r = served.upload(name, content)
        assert r.status_code == 201, r.text
        assert r.json()["media_type"] == media_type and r.json()["size"] == len(content)
    stored = served.stored_documents()
    assert len(stored) == 4

    refused = {"notes.pdf": ELF, "report.pdf": HTML, "scan.pdf": png(), "scan.png": PDF, "letter.docx": zipped(a="b"),
               "letter.doc": DOCX}
    for name, content in refused.items():
        body = problem(served.upload(name, content), 422, "invalid-input")
        assert [e["field"] for e in body["errors"]] == ["file"], body
        assert name in body["errors"][0]["message"]
    assert served.stored_documents() == stored
    assert not list((served.data / "documents").glob(".upload-*"))

    # a case cannot give an upload another kind's name either: its media type is the content's
    scan = served.upload("scan.png", png()).json()
    body = request("cigna-commercial/dme", date_of_service=later(START, 14), documents=[{**scan, "name": "scan.pdf"}])
    before = served.position()
    for _ in range(2):  # the second time from what the first read of the document found
        refusal = problem(httpx.post(f"{served.base}/cases", json=body, headers=served.auth()), 422, "invalid-input")
        assert [e["field"] for e in refusal["errors"]] == ["documents[0].name"], refusal
    assert served.position() == before
