# S3 test helpers: a client on the moto server, and a strict front for it that answers like MinIO-alike stores
# do to the checksum headers recent botocore sends by default.
"""strict_store(): a proxy to moto refusing requests that carry checksum headers; s3_params(): module params for moto."""

from __future__ import annotations

import contextlib
import functools
import http.client
import http.server
import threading
import urllib.parse

from ansible_collections.kubesnap.snapshots.plugins.module_utils import s3

CHECKSUM_HEADERS = ('x-amz-checksum-', 'x-amz-sdk-checksum-algorithm', 'x-amz-trailer')


@functools.lru_cache(maxsize=None)
def client_for(endpoint: str):
    """Our own S3 client (module_utils/s3.py) on the moto server, with the options' defaults; one per endpoint and
    process (a client is thread-safe, and tests only call it: a new one per test cost a new botocore Session)."""
    return s3.client(dict({name: spec.get('default') for name, spec in s3.S3_SPEC.items()}, **s3_params(endpoint)))


def s3_params(endpoint: str, **more) -> dict:
    """Module arguments for the moto server (moto accepts any keys; explicit ones keep the developer's AWS config out)."""
    return dict({'endpoint_url': endpoint, 'region': 'us-east-1', 'access_key': 'testing', 'secret_key': 'testing', 's3_path_style': True}, **more)


@contextlib.contextmanager
def strict_store(upstream: str, deny=None):
    """An HTTP endpoint forwarding to `upstream`, answering 400 to any request with a checksum header; yields (url, refused list).

    `deny(method, path)` true answers 403 to that request too (a store failing mid-upload).
    """
    target = urllib.parse.urlsplit(upstream)
    refused = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'

        def log_message(self, *args):  # quiet
            pass

        def _forward(self):
            body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
            offending = [h for h in self.headers if h.lower().startswith(CHECKSUM_HEADERS)]
            denied = deny is not None and deny(self.command, self.path)
            if offending or denied or 'aws-chunked' in (self.headers.get('Content-Encoding') or ''):
                refused.append((self.command, self.path, offending))
                payload = b'<Error><Code>InvalidArgument</Code><Message>checksum headers are not supported</Message></Error>'
                self.send_response(403 if denied else 400)
                self.send_header('Content-Type', 'application/xml')
                self.send_header('Content-Length', str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != 'host'}
            headers['Host'] = target.netloc
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ('content-length', 'transfer-encoding', 'connection', 'server', 'date'):
                    self.send_header(key, value)
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            if self.command != 'HEAD':
                self.wfile.write(data)
            connection.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}', refused
    finally:
        server.shutdown()
        server.server_close()
