"""Property tests: each validator in deployments.validators accepts exactly what its reference grammar accepts.

The references below are written character by character from the grammars (Kubernetes
``k8s.io/apimachinery/pkg/util/validation``, ``resource.Quantity``, the distribution reference grammar, AWS's
formats), without regular expressions, so a regex mistake in the validators (a ``$`` anchor that matches before a
trailing newline, a ``\\d`` that takes Unicode digits) shows up as a disagreement.
"""

import string

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployments import validators as v

settings.register_profile("validators", database=None, deadline=None, max_examples=200,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("validators")

LOWER = set(string.ascii_lowercase)
UPPER = set(string.ascii_uppercase)
DIGITS = set("0123456789")
HEX = set("0123456789abcdef")
ALNUM = LOWER | UPPER | DIGITS
# Characters that look like they belong but must never pass: newlines, Unicode digits and letters, the Kelvin sign
# (which case-insensitive matching folds to "k"), a dotless i, full-width digits.
TRICKY = "\n\r\t \x00١２٣߀ߐ𝟘Kıİßé"


def ref_dns1123_label(s: str) -> bool:
    return 1 <= len(s) <= 63 and set(s) <= LOWER | DIGITS | {"-"} and s[0] != "-" and s[-1] != "-"


def _ref_label_no_length(s: str) -> bool:
    return len(s) >= 1 and set(s) <= LOWER | DIGITS | {"-"} and s[0] != "-" and s[-1] != "-"


def ref_dns1123_subdomain(s: str) -> bool:
    return 1 <= len(s) <= 253 and all(_ref_label_no_length(part) for part in s.split("."))


def ref_dns1035_label(s: str) -> bool:
    return ref_dns1123_label(s) and s[0] in LOWER


def ref_label_value(s: str) -> bool:
    if s == "":
        return True
    return len(s) <= 63 and set(s) <= ALNUM | set("-_.") and s[0] in ALNUM and s[-1] in ALNUM


def ref_label_key(s: str) -> bool:
    parts = s.split("/")
    if len(parts) > 2:
        return False
    if len(parts) == 2 and not (parts[0] and ref_dns1123_subdomain(parts[0])):
        return False
    name = parts[-1]
    return 1 <= len(name) <= 63 and ref_label_value(name)


def ref_quantity(s: str) -> bool:
    for suffix in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "m", "k", "M", "G", "T", "P", "E", ""):
        if s.endswith(suffix):
            number = s[: len(s) - len(suffix)]
            whole, dot, fraction = number.partition(".")
            if not set(whole + fraction) <= DIGITS:
                continue
            if dot and fraction and (whole or True):
                return True
            if not dot and whole:
                return True
    return False


def ref_aws_account_id(s: str) -> bool:
    return len(s) == 12 and set(s) <= DIGITS


def ref_aws_region(s: str) -> bool:
    parts = s.split("-")
    if len(parts) == 4 and parts[1] in ("gov", "iso", "isob", "isoe", "isof"):
        parts = [parts[0], parts[2], parts[3]]
    if len(parts) != 3:
        return False
    area, place, number = parts
    return (len(area) == 2 and set(area) <= LOWER and len(place) >= 1 and set(place) <= LOWER
            and 1 <= len(number) <= 2 and set(number) <= DIGITS)


def ref_eks_cluster_name(s: str) -> bool:
    return 1 <= len(s) <= 100 and s[0] in ALNUM and set(s) <= ALNUM | {"-", "_"}


def ref_instance_type(s: str) -> bool:
    parts = s.split(".")
    return (len(parts) == 2 and parts[0] != "" and parts[0][0] in LOWER and set(parts[0]) <= LOWER | DIGITS | {"-"}
            and parts[1] != "" and set(parts[1]) <= LOWER | DIGITS)


def ref_snapshot_id(s: str) -> bool:
    return s.startswith("snap-") and len(s) - 5 in (8, 17) and set(s[5:]) <= HEX


def ref_secret_key(s: str) -> bool:
    return (1 <= len(s) <= 253 and set(s) <= ALNUM | set("-._") and s != "." and not s.startswith(".."))


def ref_image_tag(s: str) -> bool:
    return 1 <= len(s) <= 128 and s[0] in ALNUM | {"_"} and set(s) <= ALNUM | set("_.-")


def _ref_path_component(s: str) -> bool:
    """alphanumeric runs of [a-z0-9] joined by one separator each: '.', '_', '__' or any number of '-'."""
    runs, current, kind = [], "", None
    for char in s:
        char_kind = "alnum" if char in LOWER | DIGITS else "sep" if char in "._-" else None
        if char_kind is None:
            return False
        if char_kind != kind and current:
            runs.append((kind, current))
            current = ""
        kind, current = char_kind, current + char
    if current:
        runs.append((kind, current))
    if not runs or runs[0][0] != "alnum" or runs[-1][0] != "alnum":
        return False
    return all(kind == "alnum" or text in (".", "_", "__") or set(text) == {"-"} for kind, text in runs)


def _ref_domain(s: str) -> bool:
    host, colon, port = s.partition(":")
    if colon and not (port and set(port) <= DIGITS):
        return False
    return all(_ref_label_no_length(part) for part in host.split("."))


def ref_image_name(s: str) -> bool:
    if not 1 <= len(s) <= 255:
        return False
    components = s.split("/")
    first = components[0]
    if ("." in first or ":" in first or first == "localhost") and _ref_domain(first):
        components = components[1:]
    return all(_ref_path_component(component) for component in components)


def accepts(validator, value: str) -> bool:
    try:
        validator(value)
    except ValidationError:
        return False
    return True


def candidates(regex: str, alphabet: str) -> st.SearchStrategy[str]:
    """Valid values (from the grammar), the same with a trailing newline or a tricky character, and noise."""
    valid = st.from_regex(regex, fullmatch=True)
    return st.one_of(
        valid,
        valid.map(lambda s: s + "\n"),
        st.tuples(valid, st.sampled_from(TRICKY), st.integers(0, 300)).map(
            lambda t: t[0][: t[2]] + t[1] + t[0][t[2]:]),
        st.text(alphabet=alphabet + TRICKY, max_size=70),
    )


LABEL_ALPHABET = "abcz09-."
CASES = [
    # validator, reference, grammar for valid examples, alphabet for noise
    (v.validate_dns1123_label, ref_dns1123_label, r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", LABEL_ALPHABET),
    (v.validate_dns1035_label, ref_dns1035_label, r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", LABEL_ALPHABET),
    (v.validate_dns1123_subdomain, ref_dns1123_subdomain, r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]+){0,3}",
     LABEL_ALPHABET),
    (v.validate_label_value, ref_label_value, r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?", "aZ09-_."),
    (v.validate_label_key, ref_label_key, r"([a-z0-9]+(\.[a-z0-9]+)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?",
     "aZ09-_./"),
    (v.validate_quantity, ref_quantity, r"([0-9]+(\.[0-9]+)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?",
     "0159.mkKMGiTe+-"),
    (v.validate_aws_account_id, ref_aws_account_id, r"[0-9]{12}", "0123456789"),
    (v.validate_aws_region, ref_aws_region, r"[a-z]{2}(-gov)?-[a-z]{4,9}-[0-9]", "usetaw-129"),
    (v.validate_eks_cluster_name, ref_eks_cluster_name, r"[0-9A-Za-z][A-Za-z0-9_-]{0,99}", "aZ9-_."),
    (v.validate_instance_type, ref_instance_type, r"[a-z][a-z0-9-]{0,8}\.[a-z0-9]{1,8}", "tm3a.-x"),
    (v.validate_ebs_snapshot_id, ref_snapshot_id, r"snap-[0-9a-f]{8}([0-9a-f]{9})?", "snap-0af9F"),
    (v.validate_secret_key_name, ref_secret_key, r"[-._a-zA-Z0-9]{1,40}", "aZ0-._/"),
    (v.validate_image_tag, ref_image_tag, r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "aZ0_.-:"),
    (v.validate_image_reference, ref_image_name,
     r"([a-z0-9]+(\.[a-z0-9]+)+(:[0-9]{2,5})?/)?[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+(-[a-z0-9]+)*){0,2}",
     "az09._-/:"),
]


@pytest.mark.parametrize(("validator", "reference", "regex", "alphabet"), CASES,
                         ids=[case[0].__name__ for case in CASES])
def test_validator_matches_its_grammar(validator, reference, regex, alphabet):
    @given(candidates(regex, alphabet))
    def check(value):
        assert accepts(validator, value) == reference(value), repr(value)

    check()


@pytest.mark.parametrize("validator", [case[0] for case in CASES], ids=[case[0].__name__ for case in CASES])
@given(data=st.data())
def test_a_trailing_newline_never_passes(validator, data):
    regex = next(case[2] for case in CASES if case[0] is validator)
    value = data.draw(st.from_regex(regex, fullmatch=True))
    assert not accepts(validator, value + "\n")
    assert not accepts(validator, value + "\r\n")


@pytest.mark.parametrize(("validator", "value"), [
    (v.validate_dns1123_label, "web\n"),
    (v.validate_label_value, "alice\n"),
    (v.validate_label_key, "/name"),
    (v.validate_label_key, "a/b/c"),
    (v.validate_aws_account_id, "１２３４５６７８９０１２"),  # full-width digits: str.isdigit() says True
    (v.validate_aws_account_id, "١٢٣٤٥٦٧٨٩٠١٢"),
    (v.validate_aws_region, "us-east-١"),
    (v.validate_eks_cluster_name, "tesslate\n"),
    (v.validate_quantity, "2Gi\n"),
    (v.validate_quantity, "١Gi"),
    (v.validate_ebs_snapshot_id, "snap-0123456789abcdef0\n"),
    (v.validate_secret_key_name, "..hidden"),
    (v.validate_image, "nginx:"),
    (v.validate_image, "nginx@"),
    (v.validate_image, "nginx:1.27\n"),
    (v.validate_domain_name, "example.com."),
    (v.validate_domain_name, "example.com\n"),
    (v.validate_domain_name, "10.0.0.١"),
    (v.validate_cpu_quantity, "0.0005"),
    (v.validate_memory_quantity, "1.0000001Gi"),
])
def test_examples_that_kubernetes_or_aws_refuse(validator, value):
    with pytest.raises(ValidationError):
        validator(value)


@pytest.mark.parametrize(("validator", "value"), [
    (v.validate_label_key, "tesslate.io/workload-type"),
    (v.validate_label_value, ""),
    (v.validate_aws_region, "us-gov-west-1"),
    (v.validate_aws_region, "ap-southeast-5"),
    (v.validate_image, "123456789012.dkr.ecr.us-east-1.amazonaws.com/tesslate-backend:production"),
    (v.validate_image, "localhost:5000/team/app__x:v1.2"),
    (v.validate_image, "postgres@sha256:" + "a" * 64),
    (v.validate_image_reference, "localhost:5000"),
    (v.validate_image_reference, "123456789012.dkr.ecr.us-east-1.amazonaws.com"),
    (v.validate_domain_name, "localhost"),
    (v.validate_cpu_quantity, "0.25"),
    (v.validate_memory_quantity, "1.5Gi"),
])
def test_examples_that_pass(validator, value):
    validator(value)


def test_messages_show_a_trailing_newline():
    with pytest.raises(ValidationError) as excinfo:
        v.validate_label_value("alice\n")
    assert "'alice\\n'" in excinfo.value.messages[0]
