"""The one place that builds boto3 clients.

Configuration comes only from boto3's own variables (AWS_REGION, AWS_PROFILE, AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL and the per-service AWS_ENDPOINT_URL_<SERVICE>), so the portal runs
unchanged against AWS, an IRSA role in the cluster, or a local emulator in tests.
"""

import logging

import boto3
from botocore.config import Config

# botocore logs whole request and response bodies at DEBUG ("Making request ... with params: {'body': ...}",
# "Response body: ..."), and for Secrets Manager those bodies carry secret values. Its loggers stay at INFO or
# above, so turning the portal's log level (or a test's caplog) to DEBUG cannot leak a value.
_botocore_logger = logging.getLogger("botocore")
if _botocore_logger.getEffectiveLevel() < logging.INFO or _botocore_logger.level == logging.NOTSET:
    _botocore_logger.setLevel(logging.INFO)

# Fail fast and retry politely: a render waits on these calls.
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=5,
    read_timeout=30,
    user_agent_appid="tesslate-gitops-portal",
)


def aws_client(service: str, *, region: str | None = None):
    """A boto3 client for ``service``; ``region`` wins over AWS_REGION / the profile's region when given.

    A fresh session per call: boto3 sessions are not thread-safe, and the jobs that call this run in workers.
    """
    session = boto3.session.Session()
    return session.client(service, region_name=region or None, config=_CLIENT_CONFIG)
