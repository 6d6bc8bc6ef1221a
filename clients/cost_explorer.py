"""AWS Cost Explorer reads: GetCostAndUsage grouped by SERVICE, filtered by a cost-allocation tag, every page.

Plain data out (frozen dataclasses), no models. Cost Explorer's endpoint lives in us-east-1 whatever the
environment's region; each request (each page) costs $0.01, so callers cache (costs.services).
Errors become ``CostExplorerError`` with a ``kind`` the caller decides on: ``throttled`` and ``unreachable`` are
worth retrying later, ``credentials`` and ``error`` are not.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from clients.aws import aws_client

CE_REGION = "us-east-1"
METRIC = "UnblendedCost"
# A loop guard: Cost Explorer pages hold many groups, so a real answer needs a handful of pages at most.
MAX_PAGES = 100

THROTTLED = "throttled"
CREDENTIALS = "credentials"
UNREACHABLE = "unreachable"
ERROR = "error"
RETRYABLE = (THROTTLED, UNREACHABLE)

_THROTTLING_CODES = {"ThrottlingException", "Throttling", "LimitExceededException", "RequestLimitExceeded",
                     "TooManyRequestsException"}
_CREDENTIAL_CODES = {"ExpiredToken", "ExpiredTokenException", "UnrecognizedClientException", "InvalidClientTokenId",
                     "InvalidSignatureException", "AccessDeniedException", "AccessDenied", "SignatureDoesNotMatch",
                     "RequestExpired"}


class CostExplorerError(Exception):
    """A GetCostAndUsage call failed. ``kind``: throttled | credentials | unreachable | error; ``requests``: how
    many requests (pages) were sent before it failed, billed or not."""

    def __init__(self, kind: str, reason: str, *, requests: int = 0) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.requests = requests

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


@dataclass(frozen=True)
class ServiceCost:
    """The cost of one AWS service (Cost Explorer dimension SERVICE) in one period; ``end`` is exclusive."""

    start: datetime.date
    end: datetime.date
    service: str
    amount: Decimal
    unit: str
    estimated: bool


@dataclass(frozen=True)
class CostAndUsage:
    costs: tuple[ServiceCost, ...]
    requests: int  # pages fetched, $0.01 each


def _error(exc: Exception, requests: int) -> CostExplorerError:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "") or code
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _THROTTLING_CODES or status == 429:
            return CostExplorerError(THROTTLED, f"Cost Explorer throttled the request ({code}): {message}",
                                     requests=requests)
        if code in _CREDENTIAL_CODES:
            return CostExplorerError(CREDENTIALS, f"AWS refused the credentials ({code}): {message}",
                                     requests=requests)
        return CostExplorerError(ERROR, f"Cost Explorer answered {code or status}: {message}", requests=requests)
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CostExplorerError(CREDENTIALS, "No usable AWS credentials were found.", requests=requests)
    if isinstance(exc, (BotoConnectionError, ReadTimeoutError)):
        return CostExplorerError(UNREACHABLE, f"The Cost Explorer endpoint cannot be reached ({type(exc).__name__}).",
                                 requests=requests)
    return CostExplorerError(ERROR, f"Cost Explorer call failed ({type(exc).__name__}).", requests=requests)


def cost_and_usage(*, start: datetime.date, end: datetime.date, granularity: str, tag_key: str,
                   tag_value: str) -> CostAndUsage:
    """GetCostAndUsage for [start, end) by ``granularity`` (MONTHLY or DAILY), UnblendedCost grouped by SERVICE,
    filtered on the cost-allocation tag ``tag_key`` = ``tag_value``. Follows every NextPageToken.

    Raises CostExplorerError (see the module docstring for its kinds).
    """
    if granularity not in ("MONTHLY", "DAILY"):
        raise ValueError(f"granularity must be MONTHLY or DAILY, not {granularity!r}")
    if not start < end:
        raise ValueError(f"the period is empty: {start} to {end}")
    request = {
        "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
        "Granularity": granularity,
        "Metrics": [METRIC],
        "GroupBy": [{"Type": "DIMENSION", "Key": "SERVICE"}],
        "Filter": {"Tags": {"Key": tag_key, "Values": [tag_value], "MatchOptions": ["EQUALS"]}},
    }
    costs: list[ServiceCost] = []
    requests = 0
    try:
        client = aws_client("ce", region=CE_REGION)
        token = None
        while True:
            kwargs = dict(request, NextPageToken=token) if token else request
            requests += 1
            page = client.get_cost_and_usage(**kwargs)
            for result in page.get("ResultsByTime", []):
                period = result["TimePeriod"]
                period_start = datetime.date.fromisoformat(period["Start"])
                period_end = datetime.date.fromisoformat(period["End"])
                estimated = bool(result.get("Estimated", False))
                for group in result.get("Groups", []):
                    metric = group.get("Metrics", {}).get(METRIC, {})
                    costs.append(ServiceCost(period_start, period_end, group["Keys"][0],
                                             Decimal(metric.get("Amount", "0")), metric.get("Unit", "USD"),
                                             estimated))
            token = page.get("NextPageToken")
            if not token:
                break
            if requests >= MAX_PAGES:
                raise CostExplorerError(ERROR, f"Cost Explorer kept paging after {MAX_PAGES} pages.",
                                        requests=requests)
    except CostExplorerError:
        raise
    except (ClientError, BotoCoreError) as exc:
        raise _error(exc, requests) from None
    return CostAndUsage(tuple(costs), requests)
