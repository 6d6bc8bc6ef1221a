"""Reads for Docker Compose environments: the DNS records, server prerequisites and SSL hints of the guide's Path 1.

Plain data for the environment page; nothing here writes.
"""

import ipaddress
from dataclasses import dataclass

from deployments.models import Environment, Secret

# The deployment guide, Path 1 "Prerequisites": 16 GB RAM recommended, 50 GB+ disk.
MIN_RAM_GB = 16
MIN_DISK_GB = 50
# The guide's troubleshooting, "SSL certificate not issued (Docker Compose / Traefik)".
SSL_HINTS = (
    "DNS records not propagated yet: wait 10 to 15 minutes.",
    "Port 80 blocked by a firewall: Let's Encrypt's HTTP-01 challenge reaches the server on port 80.",
    "Rate limit hit: Let's Encrypt allows 5 duplicate certificates per week per domain.",
)
# What the rendered Compose services read (compose.yaml): the backend's settings and PostgreSQL's credentials.
REQUIRED_SECRETS = (
    ("tesslate-app-secrets", "SECRET_KEY"),
    ("tesslate-app-secrets", "DATABASE_URL"),
    ("postgres-secret", "POSTGRES_PASSWORD"),
)
CLOUDFLARE_TOKEN_KEY = "CF_DNS_API_TOKEN"


@dataclass(frozen=True)
class DnsRecord:
    type: str   # "A" (IPv4) or "AAAA" (IPv6)
    name: str   # fully qualified, e.g. studio.example.com or *.studio.example.com
    value: str  # the server IP, or "" when it is not set yet
    ttl: int    # seconds


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def compose_dns_records(environment: Environment) -> list[DnsRecord]:
    """The guide's records: ``studio`` and ``*.studio`` (here: the app domain and its wildcard) → the server IP,
    TTL 300. AAAA instead of A for an IPv6 address."""
    ip = environment.server_ip or ""
    record_type = "AAAA" if ip and ipaddress.ip_address(ip).version == 6 else "A"
    return [DnsRecord(record_type, environment.app_domain, ip, 300),
            DnsRecord(record_type, f"*.{environment.app_domain}", ip, 300)]


def compose_checks(environment: Environment) -> list[Check]:
    """Server prerequisites (guide: 16 GB RAM, 50 GB disk) against the modeled server, and what a deploy needs."""
    checks = [
        Check("Memory", environment.server_ram_gb >= MIN_RAM_GB,
              f"{environment.server_ram_gb} GB modeled; the guide recommends {MIN_RAM_GB} GB."),
        Check("Disk", environment.server_disk_gb >= MIN_DISK_GB,
              f"{environment.server_disk_gb} GB modeled; the guide asks for {MIN_DISK_GB} GB or more."),
    ]
    ip = environment.server_ip
    if not ip:
        checks.append(Check("Server IP", False, "Not set: the DNS records have nothing to point to."))
    else:
        address = ipaddress.ip_address(ip)
        public = address.is_global
        checks.append(Check("Server IP", public or environment.tls_mode == Environment.TLSMode.NONE,
                            f"{ip} is {'a public' if public else 'not a public'} address"
                            + ("" if public else "; Let's Encrypt cannot reach it for HTTP-01") + "."))
    checks.append(Check("age recipient", bool(environment.age_recipient.strip()),
                        "Set: secrets reach the server encrypted to it." if environment.age_recipient.strip()
                        else "Not set: no secret reaches the server until the server's age recipient is entered."))
    present = set(Secret.objects.filter(environment=environment).exclude(ciphertext="")
                  .values_list("secret_name", "key"))
    missing = [f"{name}/{key}" for name, key in REQUIRED_SECRETS if (name, key) not in present]
    checks.append(Check("Secrets", not missing,
                        "Missing: " + ", ".join(missing) if missing else "The keys the services read have values."))
    if environment.tls_mode != Environment.TLSMode.NONE and environment.acme_challenge == \
            Environment.AcmeChallenge.DNS01:
        has_token = any(key == CLOUDFLARE_TOKEN_KEY for _name, key in present)
        checks.append(Check("Cloudflare token", has_token,
                            f"DNS-01 reads {CLOUDFLARE_TOKEN_KEY} from a secret"
                            + ("." if has_token else ": add it.")))
    return checks


@dataclass(frozen=True)
class BackupTarget:
    """Where a Compose server uploads its database backups (scripts/tesslate-backup.sh): objects
    ``s3://{bucket}/{prefix}tesslate-{environment}-{YYYYmmdd-HHMMSS}.sql.gz`` (UTC), one per run."""

    bucket: str
    prefix: str          # ends with '/'
    region: str          # "" when neither the backup region nor the environment's AWS region is set
    object_pattern: str  # fnmatch pattern of the object keys under the prefix


def compose_backup_target(environment: Environment) -> BackupTarget | None:
    """The S3 location of the environment's backups, or None (not a Compose environment, or no bucket)."""
    if environment.kind != Environment.Kind.COMPOSE or not environment.backup_s3_bucket:
        return None
    return BackupTarget(bucket=environment.backup_s3_bucket, prefix=environment.backup_s3_key_prefix,
                        region=environment.backup_s3_region or environment.aws_region,
                        object_pattern=f"tesslate-{environment.name}-*.sql.gz")
