"""The demo's web page: the issue tracker, live through pgsift, in plain HTML and JS modules."""
