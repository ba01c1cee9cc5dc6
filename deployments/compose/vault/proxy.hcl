# Vault Proxy of the worker (vault-proxy) and of the gateway
# (vault-proxy-gateway): logs in with that process's AppRole (files from
# compose secrets, mounted as role_id and secret_id; the files stay in
# place), keeps the token renewed, and sends every proxied request with
# that token (use_auto_auth_token = "force"), whatever token the engine
# sends.
vault {
  address = "http://vault:8200"
}

auto_auth {
  method "approle" {
    mount_path = "auth/approle"
    config = {
      role_id_file_path                   = "/run/secrets/role_id"
      secret_id_file_path                 = "/run/secrets/secret_id"
      remove_secret_id_file_after_reading = false
    }
  }
}

api_proxy {
  use_auto_auth_token = "force"
}

listener "tcp" {
  address     = "0.0.0.0:8100"
  tls_disable = true
}
