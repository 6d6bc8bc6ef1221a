"""clusters/<env>/: the objects that point the cluster's GitOps tool (Argo CD or Flux) at this repository."""

from dataclasses import dataclass

from deployments import domain
from deployments.rendering.common import (
    ARGOCD_FINALIZER,
    ARGOCD_NAMESPACE,
    ARGOCD_RETRY,
    FLUX_NAMESPACE,
    FLUX_SOURCE_NAME,
    IN_CLUSTER_SERVER,
)
from deployments.rendering.templating import render_template


@dataclass(frozen=True)
class ClusterEntry:
    env_name: str
    gitops_tool: str
    repo_url: str
    branch: str
    # What decides the cluster add-ons (see cluster_addons).
    kind: str = domain.KIND_MINIKUBE
    tls_mode: str = domain.TLS_NONE
    supports_snapshots: bool = False
    ingress_class: str = "nginx"
    ingress_controller_namespace: str = "ingress-nginx"
    aws_account_id: str = ""
    disabled_addons: tuple[str, ...] = ()


# Helm charts of the cluster add-ons, pinned to exact versions (an upgrade is a reviewed commit here):
# name -> (chart repository, chart, version, namespace).
ADDON_CHARTS = {
    "cert-manager": ("https://charts.jetstack.io", "cert-manager", "v1.16.2", "cert-manager"),
    "ingress-nginx": ("https://kubernetes.github.io/ingress-nginx", "ingress-nginx", "4.11.3", None),
    # 0.17 is the first release that serves only external-secrets.io/v1, the version the overlays write.
    "external-secrets": ("https://charts.external-secrets.io", "external-secrets", "0.17.0", "external-secrets"),
    # kube-system / sealed-secrets-controller: where kubeseal looks by default.
    "sealed-secrets": ("https://bitnami-labs.github.io/sealed-secrets", "sealed-secrets", "2.16.2", "kube-system"),
    "snapshot-controller": ("https://piraeus.io/helm-charts/", "snapshot-controller", "4.1.0", "kube-system"),
    "aws-ebs-csi-driver": ("https://kubernetes-sigs.github.io/aws-ebs-csi-driver", "aws-ebs-csi-driver", "2.36.0",
                           "kube-system"),
    "reflector": ("https://emberstack.github.io/helm-charts", "reflector", "7.1.288", "reflector"),
}


def cluster_addons(entry: ClusterEntry) -> list[dict]:
    """The add-ons the environment's rendered tree depends on, minus those listed in disabled_addons.

    - cert-manager (any TLS mode): the ClusterIssuer and the wildcard Certificate;
    - ingress-nginx: the Ingresses' controller, its IngressClass named as the environment's ingress class, in the
      environment's ingress-controller namespace (the NetworkPolicies admit that namespace);
    - external-secrets on EKS (ExternalSecrets from AWS Secrets Manager), sealed-secrets elsewhere;
    - snapshot-controller where projects are hibernated to VolumeSnapshots (EBS);
    - aws-ebs-csi-driver on EKS, with IRSA role arn:aws:iam::{account}:role/tesslate-ebs-csi-{environment};
    - reflector with the DNS01 wildcard certificate, which it copies into every proj-* namespace.

    Returns dicts with name, repo_url, chart, version, namespace and values (Helm values, possibly empty).
    """
    eks = entry.kind == domain.KIND_EKS
    wanted = {
        "cert-manager": entry.tls_mode != domain.TLS_NONE,
        "ingress-nginx": True,
        "external-secrets": eks,
        "sealed-secrets": not eks,
        "snapshot-controller": entry.supports_snapshots,
        "aws-ebs-csi-driver": eks,
        "reflector": entry.tls_mode == domain.TLS_CERT_MANAGER_DNS01,
    }
    values = {
        "cert-manager": {"crds": {"enabled": True}},
        "ingress-nginx": {"controller": {"ingressClass": entry.ingress_class,
                                         "ingressClassResource": {"name": entry.ingress_class}}},
        "external-secrets": {"installCRDs": True},
        "sealed-secrets": {"fullnameOverride": "sealed-secrets-controller"},
        "aws-ebs-csi-driver": {"controller": {"serviceAccount": {"annotations": {
            "eks.amazonaws.com/role-arn": f"arn:aws:iam::{entry.aws_account_id}:role/tesslate-ebs-csi-{entry.env_name}",
        }}}},
    }
    addons = []
    for name, (repo_url, chart, version, namespace) in ADDON_CHARTS.items():
        if wanted[name] and name not in entry.disabled_addons:
            addons.append({"name": name, "repo_url": repo_url, "chart": chart, "version": version,
                           "namespace": namespace or entry.ingress_controller_namespace,
                           "values": values.get(name, {})})
    return addons


def render_cluster_entry(entry: ClusterEntry) -> dict[str, bytes]:
    prefix = f"clusters/{entry.env_name}/"
    context = {
        "env": entry.env_name, "repo_url": entry.repo_url, "branch": entry.branch,
        "platform_path": f"environments/{entry.env_name}/platform",
        "projects_path": f"environments/{entry.env_name}/projects",
    }
    if entry.gitops_tool == domain.GITOPS_FLUX:
        context.update({"namespace": FLUX_NAMESPACE, "source": FLUX_SOURCE_NAME})
        files = {
            "source.yaml": render_template("clusters/flux-gitrepository.yaml.j2", context),
            "platform.yaml": render_template("clusters/flux-kustomization.yaml.j2", {
                **context, "name": f"tesslate-platform-{entry.env_name}", "path": context["platform_path"],
                "depends_on": None, "timeout": "5m0s"}),
            "projects.yaml": render_template("clusters/flux-kustomization.yaml.j2", {
                **context, "name": f"tesslate-projects-{entry.env_name}", "path": context["projects_path"],
                "depends_on": f"tesslate-platform-{entry.env_name}", "timeout": "15m0s"}),
        }
    else:
        context.update({
            "namespace": ARGOCD_NAMESPACE, "project": f"tesslate-{entry.env_name}", "server": IN_CLUSTER_SERVER,
            "finalizer": ARGOCD_FINALIZER, "retry": ARGOCD_RETRY,
            # Argo CD's Go template syntax, passed as data so jinja leaves the braces alone.
            "app_name_template": f"{entry.env_name}-{{{{ .path.basename }}}}",
            "path_template": "{{ .path.path }}",
            "namespace_template": "{{ .path.basename }}",
        })
        files = {
            "appproject.yaml": render_template("clusters/argocd-appproject.yaml.j2", context),
            "platform.yaml": render_template("clusters/argocd-application.yaml.j2", context),
            "projects.yaml": render_template("clusters/argocd-applicationset.yaml.j2", context),
        }
    addons = cluster_addons(entry)
    if addons:
        if entry.gitops_tool == domain.GITOPS_FLUX:
            # One HelmRepository per add-on, named after it.
            files["addons.yaml"] = render_template("clusters/flux-addons.yaml.j2", {
                **context, "addons": [{**a, "repository": a["name"]} for a in addons],
                "repositories": [{"name": a["name"], "url": a["repo_url"]} for a in addons]})
        else:
            files["addons.yaml"] = render_template("clusters/argocd-addons.yaml.j2", {
                **context, "addons": addons, "addons_project": f"tesslate-addons-{entry.env_name}",
                "repo_urls": sorted({a["repo_url"] for a in addons})})
    files["kustomization.yaml"] = render_template("clusters/kustomization.yaml.j2", {
        "resources": sorted(files)})
    return {prefix + name: text.encode() for name, text in sorted(files.items())}

