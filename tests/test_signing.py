"""Deploy keys, bundle signatures and self-test probes, with the real MobileNet V2 and real keys."""

import json
import os
import shutil
import stat

import pytest
from conftest import assert_one_line_error, run_cli, testdata_path

from edgesight.device.core.errors import BundleError, EdgesightError
from edgesight.device.core.signing import (
    KeyFileError,
    generate_keys,
    key_fingerprint,
    load_private_key,
    load_public_keys,
    sign_bundle,
    verify_bundle,
)
from edgesight.device.selftest import run_self_test


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return generate_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory):
    return generate_keys(tmp_path_factory.mktemp("other"))


@pytest.fixture(scope="module")
def signed_master(tmp_path_factory, keys):
    """One signed bundle with probes, made through the CLI as a user would."""
    out = tmp_path_factory.mktemp("master") / "v2"
    result = run_cli(
        "bundle", "create", testdata_path("models", "mobilenet_v2_1.0_224_quant.tflite"),
        "--labels", testdata_path("models", "imagenet_labels.txt"), "--out", out,
        "--probe", testdata_path("images"), "--sign", keys[0], "--name", "imagenet-v2", "--version", "1.0.0",
    )  # fmt: skip
    assert result.returncode == 0, result
    return out


@pytest.fixture
def bundle(tmp_path, signed_master):
    return shutil.copytree(signed_master, tmp_path / "bundle")


def test_generated_keys_are_private_and_never_overwritten(tmp_path):
    key, pub = generate_keys(tmp_path / "k")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    before = key.read_bytes()
    with pytest.raises(EdgesightError, match="already exists"):
        generate_keys(tmp_path / "k")
    assert key.read_bytes() == before
    result = run_cli("keys", "generate", tmp_path / "k")
    assert_one_line_error(result, "deploy.key", "already exists", code=1)
    assert key.read_bytes() == before


def test_keys_generate_cli_prints_the_fingerprint(tmp_path):
    result = run_cli("keys", "generate", tmp_path / "new")
    assert result.returncode == 0, result
    assert key_fingerprint(tmp_path / "new" / "deploy.pub") in result.stdout
    assert stat.S_IMODE((tmp_path / "new" / "deploy.key").stat().st_mode) == 0o600


def test_good_bundle_verifies_and_names_the_signer(bundle, keys, other_keys):
    assert verify_bundle(bundle, [keys[1]]) == key_fingerprint(keys[1])
    assert verify_bundle(bundle, [other_keys[1], keys[1]]) == key_fingerprint(keys[1])  # any trusted key
    result = run_cli("bundle", "verify", bundle, "--key", keys[1])
    assert result.returncode == 0, result
    assert result.stdout.strip() == key_fingerprint(keys[1])


def test_flipped_byte_in_the_model_is_named(bundle, keys):
    model = bundle / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.tflite: sha256 does not match"):
        verify_bundle(bundle, [keys[1]])
    assert_one_line_error(run_cli("bundle", "verify", bundle, "--key", keys[1]), "model.tflite", "sha256", code=1)


def test_edited_manifest_is_a_bad_signature(bundle, keys):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["version"] = "9.9.9"
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    with pytest.raises(BundleError, match="bad signature"):
        verify_bundle(bundle, [keys[1]])
    assert_one_line_error(run_cli("bundle", "verify", bundle, "--key", keys[1]), "manifest.sig", "bad signature")


def test_other_key_is_untrusted(bundle, keys, other_keys):
    with pytest.raises(BundleError, match="untrusted key") as info:
        verify_bundle(bundle, [other_keys[1]])
    assert key_fingerprint(keys[1]) in str(info.value)  # says who did sign
    assert_one_line_error(run_cli("bundle", "verify", bundle, "--key", other_keys[1]), "untrusted key", code=1)


def test_unsigned_bundle_is_refused(bundle, keys):
    (bundle / "manifest.sig").unlink()
    with pytest.raises(BundleError, match="unsigned"):
        verify_bundle(bundle, [keys[1]])
    assert_one_line_error(run_cli("bundle", "verify", bundle, "--key", keys[1]), "manifest.sig", "unsigned")


def test_garbled_signature_file_is_one_line(bundle, keys):
    (bundle / "manifest.sig").write_text("not json")
    assert_one_line_error(run_cli("bundle", "verify", bundle, "--key", keys[1]), "manifest.sig", "not a valid")


def test_tampered_probe_image_is_named(bundle, keys):
    probe = bundle / "probes" / "probe_00.png"
    probe.write_bytes(probe.read_bytes() + b"x")
    with pytest.raises(BundleError, match="probe_00.png: sha256"):
        verify_bundle(bundle, [keys[1]])


def test_private_key_readable_by_others_is_refused(tmp_path, bundle):
    key, _ = generate_keys(tmp_path / "loose")
    os.chmod(key, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_private_key(key)
    before = (bundle / "manifest.sig").read_bytes()
    result = run_cli("bundle", "sign", bundle, "--key", key)
    assert_one_line_error(result, str(key), "chmod 600", code=2)
    assert (bundle / "manifest.sig").read_bytes() == before


def test_public_key_writable_by_others_is_refused(tmp_path, keys, bundle):
    pub = tmp_path / "deploy.pub"
    shutil.copyfile(keys[1], pub)
    os.chmod(pub, 0o666)
    with pytest.raises(KeyFileError, match="writable by group or others"):
        load_public_keys([pub])
    assert_one_line_error(run_cli("bundle", "verify", bundle, "--key", pub), str(pub), "chmod 644", code=2)


def test_not_a_key_is_one_line(tmp_path, bundle):
    junk = tmp_path / "junk.pub"
    junk.write_text("hello\n")
    assert_one_line_error(run_cli("bundle", "verify", bundle, "--key", junk), str(junk), "not a PEM public key")


def test_resign_with_another_key_moves_trust(bundle, keys, other_keys):
    result = run_cli("bundle", "sign", bundle, "--key", other_keys[0])
    assert result.returncode == 0, result
    assert verify_bundle(bundle, [other_keys[1]]) == key_fingerprint(other_keys[1])
    with pytest.raises(BundleError, match="untrusted"):
        verify_bundle(bundle, [keys[1]])


def test_self_test_passes_on_the_real_bundle(bundle):
    result = run_self_test(bundle, runtime="litert")
    assert result.passed, result
    assert result.checked >= 4 and not result.failures
    cli = run_cli("bundle", "self-test", bundle)
    assert cli.returncode == 0 and "probes reproduced" in cli.stdout, cli


def test_self_test_fails_when_probes_claim_another_top1(bundle, keys):
    from edgesight.device.selftest import _list_in_manifest

    path = bundle / "probes" / "probes.json"
    body = json.loads(path.read_text())
    body["probes"][0]["index"] = 1
    path.write_text(json.dumps(body))
    _list_in_manifest(bundle, "probes/probes.json")  # a consistent, re-signed bundle: only the self-test can object
    sign_bundle(bundle, keys[0])
    assert verify_bundle(bundle, [keys[1]])
    result = run_self_test(bundle, runtime="litert")
    assert not result.passed and result.checked == len(body["probes"])
    assert len(result.failures) == 1 and "probe_00.png" in result.failures[0] and "expected 1" in result.failures[0]
    assert_one_line_error(run_cli("bundle", "self-test", bundle), "probe_00.png", "self-test failed", code=1)


def test_self_test_fails_on_a_score_outside_tolerance(bundle):
    from edgesight.device.selftest import _list_in_manifest

    path = bundle / "probes" / "probes.json"
    body = json.loads(path.read_text())
    body["probes"][1]["score"] -= 0.1
    path.write_text(json.dumps(body))
    _list_in_manifest(bundle, "probes/probes.json")
    result = run_self_test(bundle)
    assert not result.passed and "probe_01.png: score" in result.failures[0]


def test_self_test_refuses_probes_the_manifest_does_not_cover(bundle):
    path = bundle / "probes" / "probes.json"
    path.write_text(path.read_text() + " ")
    result = run_self_test(bundle)
    assert not result.passed and "probes.json: sha256 does not match manifest.json" in result.reason
