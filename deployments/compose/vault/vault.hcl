# Vault server of the one-server compose stack: file storage in the
# vault-data volume, plain HTTP on the compose network (published on
# 127.0.0.1 only). It starts sealed; README.md next to compose.yaml
# describes init and unseal. Put TLS in front (or configure tls_cert_file
# here) before Vault is reachable from another machine.
storage "file" {
  path = "/vault/file"
}

listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = true
}

api_addr = "http://vault:8200"
ui       = false
