"""A real SoftHSM2 token for tests, set up from scratch in a directory.

    token = create_token(tmp_path, aes=["kas-aes"], rsa=["kas-rsa"], ec=["kas-ec"])
    os.environ.update(token.env)      # before anything in this process loads SoftHSM
    cfg = token.config("kas-rsa")     # a pkcs11 manager config_json (dict)

`create_token` writes a softhsm2.conf whose tokendir is inside `directory`,
initializes a token (label, SO PIN, user PIN) with softhsm2-util, and
generates the keys with python-pkcs11. Key generation and inspection run in
a child Python process: SoftHSM keeps per-process state (initialization,
login, sessions), and the process under test must own it alone.

Keys are made the way a KAS operator should make them: on the token,
private, sensitive and not extractable (the private halves never leave the
token). RSA keys may encrypt/decrypt (OAEP), AES keys encrypt/decrypt.

SoftHSM reads SOFTHSM2_CONF when the module is initialized (C_Initialize),
so one process should use one token directory: see `session_token`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


class SoftHSMUnavailable(RuntimeError):
    """softhsm2 (module or softhsm2-util) is not installed."""


def find_module() -> str:
    for path in MODULE_CANDIDATES:
        if os.path.exists(path):
            return path
    raise SoftHSMUnavailable("libsofthsm2.so not found (install Debian package softhsm2)")


@dataclass
class SoftHSMToken:
    module: str            # path of libsofthsm2.so
    directory: Path        # holds softhsm2.conf and tokens/
    conf: Path             # the SOFTHSM2_CONF file
    label: str             # token label
    so_pin: str
    user_pin: str
    slot_id: int           # as assigned at initialization
    keys: dict = field(default_factory=dict)  # label -> "aes" | "rsa" | "ec"

    def __repr__(self) -> str:  # no PINs
        return f"SoftHSMToken(label={self.label!r}, slot_id={self.slot_id}, directory={str(self.directory)!r})"

    @property
    def env(self) -> dict[str, str]:
        """The environment entries a process needs to see this token."""
        return {"SOFTHSM2_CONF": str(self.conf)}

    def config(self, key_label: str | None = None, **extra) -> dict:
        """A pkcs11 manager config (module, token_label, pin, key_label)."""
        cfg = {"module": self.module, "token_label": self.label, "pin": self.user_pin}
        if key_label is not None:
            cfg["key_label"] = key_label
        cfg.update(extra)
        return cfg

    def config_json(self, key_label: str | None = None, **extra) -> bytes:
        return json.dumps(self.config(key_label, **extra)).encode()

    # -- operations in a child process ---------------------------------------

    def _child(self, request: dict) -> dict:
        request = {"module": self.module, "token": self.label, "pin": self.user_pin, **request}
        env = {**os.environ, **self.env}
        proc = subprocess.run([sys.executable, __file__], input=json.dumps(request),
                              capture_output=True, text=True, env=env, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"softhsm helper failed: {proc.stderr.strip()[-2000:]}")
        return json.loads(proc.stdout)

    def generate(self, aes=(), rsa=(), ec=(), rsa_bits: int = 2048, curve: str = "secp256r1") -> None:
        """Generates AES-256 keys, RSA key pairs and EC key pairs with these labels."""
        self._child({"op": "generate", "aes": list(aes), "rsa": list(rsa), "ec": list(ec),
                     "rsa_bits": rsa_bits, "curve": curve})
        self.keys.update({k: "aes" for k in aes} | {k: "rsa" for k in rsa} | {k: "ec" for k in ec})

    def key_attributes(self, label: str, object_class: str) -> dict:
        """Security attributes of a key object ("secret", "private", "public"):
        {"sensitive", "extractable", "always_sensitive", "never_extractable",
        "value_readable"} -- value_readable says whether the key's secret
        part (CKA_VALUE / CKA_PRIVATE_EXPONENT) could be read off the token."""
        return self._child({"op": "attributes", "label": label, "class": object_class})

    def reinitialize(self, aes=(), rsa=(), ec=()) -> None:
        """Re-initializes the token (same label and PINs): every key is
        destroyed; then generates the given keys afresh."""
        slot = _init_token(self.conf, self.label, self.so_pin, self.user_pin, reinit_slot=self.slot_id)
        self.slot_id = slot
        self.keys = {}
        if aes or rsa or ec:
            self.generate(aes=aes, rsa=rsa, ec=ec)

    def delete(self) -> None:
        """Deletes the token (as if the HSM token were removed)."""
        _util(self.conf, "--delete-token", "--token", self.label)


def _util(conf: Path, *args: str) -> str:
    exe = shutil.which("softhsm2-util")
    if not exe:
        raise SoftHSMUnavailable("softhsm2-util not found (install Debian package softhsm2)")
    proc = subprocess.run([exe, *args], capture_output=True, text=True,
                          env={**os.environ, "SOFTHSM2_CONF": str(conf)}, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"softhsm2-util {args[0]} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def _init_token(conf: Path, label: str, so_pin: str, user_pin: str, reinit_slot: int | None = None) -> int:
    where = ["--slot", str(reinit_slot)] if reinit_slot is not None else ["--free"]
    out = _util(conf, "--init-token", *where, "--label", label, "--so-pin", so_pin, "--pin", user_pin)
    m = re.search(r"reassigned to slot (\d+)", out)
    if m:
        return int(m.group(1))
    if reinit_slot is not None:
        return reinit_slot
    raise RuntimeError(f"softhsm2-util did not report the new slot: {out.strip()}")


def create_token(directory: str | os.PathLike, label: str = "kas-test", *, user_pin: str | None = None,
                 so_pin: str | None = None, aes=(), rsa=(), ec=()) -> SoftHSMToken:
    """A fresh token in `directory` (created), with the given keys."""
    module = find_module()
    directory = Path(directory)
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    user_pin = user_pin or secrets.token_hex(6)
    so_pin = so_pin or secrets.token_hex(6)
    slot = _init_token(conf, label, so_pin, user_pin)
    token = SoftHSMToken(module=module, directory=directory, conf=conf, label=label,
                         so_pin=so_pin, user_pin=user_pin, slot_id=slot)
    if aes or rsa or ec:
        token.generate(aes=aes, rsa=rsa, ec=ec)
    return token


def add_token(existing: SoftHSMToken, label: str, *, aes=(), rsa=(), ec=()) -> SoftHSMToken:
    """Another token in the same token directory (same SOFTHSM2_CONF), with
    the same PINs. A process that already initialized SoftHSM sees it only
    after its next C_Initialize (SoftHSM2 scans the directory then)."""
    slot = _init_token(existing.conf, label, existing.so_pin, existing.user_pin)
    token = SoftHSMToken(module=existing.module, directory=existing.directory, conf=existing.conf,
                         label=label, so_pin=existing.so_pin, user_pin=existing.user_pin, slot_id=slot)
    if aes or rsa or ec:
        token.generate(aes=aes, rsa=rsa, ec=ec)
    return token


_session_token: SoftHSMToken | None = None


def session_token(base_dir: str | os.PathLike, **create_args) -> SoftHSMToken:
    """One token per test process, created on first use under base_dir with
    create_args; SOFTHSM2_CONF is set in os.environ (SoftHSM reads it once
    per initialization, so every user in the process must share it)."""
    global _session_token
    if _session_token is None:
        _session_token = create_token(base_dir, **create_args)
        os.environ.update(_session_token.env)
    else:  # a later caller may want more keys
        missing = {kind: [k for k in create_args.get(kind, ()) if k not in _session_token.keys]
                   for kind in ("aes", "rsa", "ec")}
        if any(missing.values()):
            _session_token.generate(**missing)
    return _session_token


# ---- the child process side ---------------------------------------------------

def _child_main(request: dict) -> dict:
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.util.ec import encode_named_curve_parameters

    lib = pkcs11.lib(request["module"])
    token = lib.get_token(token_label=request["token"])
    with token.open(rw=True, user_pin=request["pin"]) as session:
        if request["op"] == "generate":
            private = {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                       Attribute.EXTRACTABLE: False}
            for label in request["aes"]:
                session.generate_key(KeyType.AES, 256, label=label, store=True, template={
                    **private, Attribute.ENCRYPT: True, Attribute.DECRYPT: True,
                    Attribute.WRAP: False, Attribute.UNWRAP: False})
            for label in request["rsa"]:
                session.generate_keypair(
                    KeyType.RSA, request["rsa_bits"], label=label, store=True,
                    public_template={Attribute.TOKEN: True, Attribute.ENCRYPT: True, Attribute.VERIFY: False,
                                     Attribute.WRAP: False},
                    private_template={**private, Attribute.DECRYPT: True, Attribute.SIGN: False,
                                      Attribute.UNWRAP: False})
            for label in request["ec"]:
                params = session.create_domain_parameters(
                    KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(request["curve"])},
                    local=True)
                params.generate_keypair(label=label, store=True,
                                        public_template={Attribute.TOKEN: True},
                                        private_template={**private, Attribute.DERIVE: True})
            return {"ok": True}
        if request["op"] == "attributes":
            cls = {"secret": ObjectClass.SECRET_KEY, "private": ObjectClass.PRIVATE_KEY,
                   "public": ObjectClass.PUBLIC_KEY}[request["class"]]
            key = session.get_key(object_class=cls, label=request["label"])
            out = {}
            for name, attr in (("sensitive", Attribute.SENSITIVE), ("extractable", Attribute.EXTRACTABLE),
                               ("always_sensitive", Attribute.ALWAYS_SENSITIVE),
                               ("never_extractable", Attribute.NEVER_EXTRACTABLE)):
                try:
                    out[name] = bool(key[attr])
                except Exception:
                    out[name] = None
            secret_attr = Attribute.VALUE if cls == ObjectClass.SECRET_KEY else Attribute.PRIVATE_EXPONENT
            if cls == ObjectClass.PRIVATE_KEY and key.key_type == KeyType.EC:
                secret_attr = Attribute.VALUE
            try:
                key[secret_attr]
                out["value_readable"] = True
            except pkcs11.exceptions.AttributeSensitive:
                out["value_readable"] = False
            except pkcs11.exceptions.AttributeTypeInvalid:
                out["value_readable"] = None if cls == ObjectClass.PUBLIC_KEY else True
            return out
    raise ValueError(f"unknown op {request['op']!r}")


if __name__ == "__main__":
    print(json.dumps(_child_main(json.loads(sys.stdin.read()))))
