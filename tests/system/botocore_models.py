# botocore reads a service's model, its endpoint rules and the partitions (a few MB of JSON) once per Session, into a
# cache on the Session's Loader: ~0.12 s of CPU for every client made from a new Session, against ~0.02 s when the JSON
# is already read. The collection makes one Session per client, as a module run should (one run, few clients). The
# test processes make thousands of clients (a helper per test, a backend per assertion), and so do the module runs
# forked from tests/system/module_server.py: profiled, the pytest workers spent more CPU reading botocore's JSON than on
# anything else. So in those processes the Loaders share what they read. What is cached is botocore's own data files,
# as each Loader would have read them; nothing about a request or a client is shared.
"""share_loaded_models(): botocore Loaders of this process that would read the same files share what they read."""

from __future__ import annotations

import boto3.session
import botocore.loaders
import botocore.session

_READ: dict = {}


class SharedCache:
    """A Loader's cache (botocore's `instance_cache` reads and writes `loader._cache`) kept in one dict for the process.

    An entry is keyed by what decides the data read, looked up at each use: the Loader's class, its search paths (boto3
    adds its own after the Loader is made; AWS_DATA_PATH adds more) and the extras merged into the models it loads.
    """

    def __init__(self, loader):
        self.loader = loader

    def _key(self, key):
        loader = self.loader
        return (type(loader), tuple(loader.search_paths), tuple(loader.extras_types), key)

    def __contains__(self, key):
        return self._key(key) in _READ

    def __getitem__(self, key):
        return _READ[self._key(key)]

    def __setitem__(self, key, value):
        _READ[self._key(key)] = value


def share_loaded_models(*warm_services: str) -> None:
    """Make Loaders share what they read (once per process); read the models of `warm_services` now, so that processes
    forked later find them read."""
    loader_class = botocore.loaders.Loader
    if not getattr(loader_class.__init__, "shares_cache", False):
        original = loader_class.__init__

        def init(self, *args, **kwargs):
            original(self, *args, **kwargs)
            self._cache = SharedCache(self)  # pylint: disable=protected-access

        init.shares_cache = True
        loader_class.__init__ = init
    if not warm_services:
        return
    # Both kinds of Session: boto3's Loader searches one more directory than botocore's, so it reads under other keys
    # (warmed with botocore's alone, every forked run still read ~4 MB of JSON again for its first boto3 client).
    # The paginators too (any operation's name loads the service's): the collection pages its EC2 and S3 listings.
    credentials = {"region_name": "us-east-1", "endpoint_url": "http://127.0.0.1:9", "aws_access_key_id": "warm",
                   "aws_secret_access_key": "warm"}
    for make_client in (botocore.session.Session().create_client, boto3.session.Session().client):
        for service in warm_services:
            client = make_client(service, **credentials)
            client.can_paginate(next(iter(client.meta.method_to_api_mapping)))
