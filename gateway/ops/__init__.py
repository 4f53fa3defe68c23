"""The ops dashboard: server-rendered pages under /ops for the people who keep the gateway up.

Vietnamese by default with an English switch; every asset is served by the gateway itself
(government networks are often closed, so no CDN); no front-end build step.
"""
