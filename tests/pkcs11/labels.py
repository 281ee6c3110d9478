"""Labels of the keys the pkcs11 tests create on their SoftHSM2 token."""

AES_KEY = "kas-aes"   # AES-256: provider mode
RSA_KEY = "kas-rsa"   # RSA-2048 key pair: remote mode
EC_KEY = "kas-ec"     # EC P-256 key pair: public key export, remote mode (ECDH)
EC384_KEY = "kas-ec384"  # EC P-384 key pair: remote mode (ECDH)
