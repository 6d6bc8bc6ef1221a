"""Clients of external systems, one module each: AWS (boto3) and Kubernetes.

They know nothing of the portal's models: callers pass plain values (a region, a kubeconfig context) and get
plain data back (dicts, frozen dataclasses). Tests point them at a local endpoint (a moto server, a local HTTP
server speaking the Kubernetes API) through configuration, never by replacing the client code.
"""
