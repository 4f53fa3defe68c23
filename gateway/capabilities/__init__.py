"""The ports: canonical models (English names) and Protocols, one module per capability.

The core and the /v1 API speak only these. Adapters implement them for one national system.
"""
