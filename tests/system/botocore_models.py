# botocore reads a service's model, its endpoint rules and the partitions (a few MB of JSON) once per Session, into a
# cache on the Session's Loader: ~0.12 s of CPU for every client made from a new Session, against ~0.02 s when the JSON
# is already read. The collection makes one Session per client, as a module run should (one run, few clients). The
# test processes make thousands of clients (a helper per test, a backend per assertion), and so do the module runs
# forked from tests/system/module_server.py: profiled, the pytest workers spent more CPU reading botocore's JSON than on
# anything else. So in those processes every Loader with the same search paths shares one cache. What is cached is
# botocore's own data files, as each Loader would have read them; nothing about a request or a client is shared.
"""share_loaded_models(): every botocore Loader of this process with the same search paths shares one cache."""

from __future__ import annotations

import botocore.loaders
import botocore.session

_CACHES: dict = {}


def share_loaded_models(*warm_services: str) -> None:
    """Make Loaders share their cache by search paths (once per process); read the models of `warm_services` now, so
    that processes forked later find them read."""
    loader_class = botocore.loaders.Loader
    if not getattr(loader_class.__init__, "shares_cache", False):
        original = loader_class.__init__

        def init(self, *args, **kwargs):
            original(self, *args, **kwargs)
            # The paths decide which files are read: a Loader given other paths (AWS_DATA_PATH) gets its own cache.
            self._cache = _CACHES.setdefault(tuple(self.search_paths), {})  # pylint: disable=protected-access

        init.shares_cache = True
        loader_class.__init__ = init
    if warm_services:
        session = botocore.session.Session()
        for service in warm_services:
            session.create_client(service, region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                                  aws_access_key_id="warm", aws_secret_access_key="warm")
