"""`lxmert serve`: visual question answering over HTTP, with a web page (issue 15; the contract is docs/serving.md).

The top of the data flow: it imports pipelines, extract and lxmert, and nothing imports it. A request goes

    app.py (parse, check, API key) -> a thread pool (decode the image, sha256) -> cache.py (RegionFeatures by
    sha256) -> batching.py (the device's worker thread: detector passes, then LXMERT passes, each gathering
    concurrent requests) -> models.py (the pipelines: RegionFeatures in, answers out) -> the JSON of schemas.py

config.py holds the limits (torch-free, so `lxmert serve --help` answers at once), metrics.py the Prometheus
metrics of one app, cli.py the command and its graceful SIGTERM.
"""
