"""Re-encrypt every stored secret value under the newest key of PORTAL_ENCRYPTION_KEYS.

Key rotation: put a new key first in PORTAL_ENCRYPTION_KEYS (keep the old ones after it), restart, run this
command, then remove the old keys. All or nothing: if any value cannot be opened, nothing changes.
"""

from django.core.management.base import BaseCommand, CommandError

from deployments import services
from deployments.secrets import crypto


class Command(BaseCommand):
    help = "Re-encrypt every secret value under the newest key in PORTAL_ENCRYPTION_KEYS (all or nothing)."

    def handle(self, *args, **options):
        try:
            crypto.keys_check()  # before touching the database: a key problem needs no connection to report
            result = services.secret_reencrypt_all()
        except crypto.EncryptionKeyError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(
            f"Re-encrypted {result.total} secret value(s) under the newest of {result.keys} key(s); "
            f"{result.from_older_keys} were under an older key, {result.total - result.from_older_keys} "
            "already under the newest."
        ))
        if result.keys > 1:
            self.stdout.write("Every value now opens with the newest key: the older keys can be removed from "
                              "PORTAL_ENCRYPTION_KEYS.")
