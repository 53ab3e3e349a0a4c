"""`tailor demo`: the whole product on this machine (runner), and what it is made of — the example
manifests overlaid for the local stack (manifests), kubectl and readiness (kube), the child processes
(children), the storefront server (storefront), the content API client (client), the self-check
(check) and simulated shoppers (traffic). The command line is tailor/cli/demo.py.
"""
