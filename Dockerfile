# The portal's own image: one image, three entry points (web, worker, scheduler) chosen by the first argument.
#   docker build -t tesslate-gitops-portal .
#   docker run ... tesslate-gitops-portal web | worker | scheduler | migrate
FROM python:3.11-slim-bookworm

ARG KUBECTL_VERSION=v1.32.3
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORTAL_IGNORE_DOTENV=1 STATIC_MANIFEST=true STATIC_ROOT=/app/static GITOPS_REPO_DIR=/var/lib/portal/repo \
    HOME=/home/portal

# git for the GitOps repository, kubectl for the validation gate (`kubectl kustomize`), checked against its sha256.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates curl tini \
 && curl -fsSLo /usr/local/bin/kubectl "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/amd64/kubectl" \
 && echo "$(curl -fsSL "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/amd64/kubectl.sha256")  /usr/local/bin/kubectl" \
    | sha256sum -c - \
 && chmod 0755 /usr/local/bin/kubectl \
 && apt-get purge -y curl && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# Hashed, compressed static files served by WhiteNoise from the web process. collectstatic needs settings that
# start; these throwaway values exist only for this build step.
RUN DEBUG=false SECRET_KEY=collectstatic-only ALLOWED_HOSTS=localhost \
    PORTAL_ENCRYPTION_KEYS=n1kJ2b6zqYxVhB7gVJ0p3m8Xq9sR4tU5wY6zA7bC8dE= \
    python manage.py collectstatic --noinput \
 && groupadd --system --gid 10001 portal && useradd --system --uid 10001 --gid portal --home-dir /home/portal \
    --create-home portal \
 && mkdir -p /var/lib/portal && chown portal:portal /var/lib/portal \
 && chmod 0755 deploy/entrypoint.sh

USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["/usr/bin/tini", "--", "/app/deploy/entrypoint.sh"]
CMD ["web"]
