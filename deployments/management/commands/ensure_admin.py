import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a superuser for the local portal if none exists, and print how to log in."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("PORTAL_ADMIN_USER", "admin"))
        parser.add_argument("--password-file", default="var/admin-password",
                            help="Where the generated password is kept (git-ignored).")

    def handle(self, *args, username, password_file, **options):
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            hint = f"the password in {password_file}" if os.path.exists(password_file) else "its existing password"
            self.stdout.write(f"Log in at http://127.0.0.1:8000/admin/ as '{username}' with {hint}.")
            return
        password = os.environ.get("PORTAL_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email=f"{username}@localhost", password=password)
        os.makedirs(os.path.dirname(password_file) or ".", exist_ok=True)
        with open(os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            fh.write(password + "\n")
        self.stdout.write(self.style.SUCCESS(
            f"Created admin '{username}'. Log in at http://127.0.0.1:8000/admin/ with the password in {password_file}."
        ))
