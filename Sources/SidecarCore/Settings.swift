/// Every setting the sidecar reads: one row per setting, shared by the loader, `check-config`, `--help` and the
/// README's configuration reference (a test keeps the README table in step with this list).
public struct Setting: Sendable, Equatable {
    /// Key in the YAML file.
    public let file: String
    public let env: String
    /// Long flag without dashes, or nil when the setting has no flag.
    public let flag: String?
    public let defaultValue: String
    public let meaning: String
}

public enum Settings {
    public static let all: [Setting] = [
        Setting(file: "listen", env: "SIDECAR_LISTEN", flag: "listen", defaultValue: "0.0.0.0:8080", meaning: "Where to listen: `host:port` or `unix:/path`."),
        Setting(file: "upstream", env: "SIDECAR_UPSTREAM", flag: "upstream", defaultValue: "echo", meaning: "`http://host:port[/base-path]`, `unix:/path`, or `echo` (built-in echo upstream, a demo)."),
        Setting(file: "threads", env: "SIDECAR_THREADS", flag: "threads", defaultValue: "cores", meaning: "Event-loop threads."),
        Setting(file: "public_paths", env: "SIDECAR_PUBLIC_PATHS", flag: "public-paths", defaultValue: "", meaning: "Comma list of path prefixes that need no token (`/docs` covers `/docs/…`)."),
        Setting(file: "cookie_names", env: "SIDECAR_COOKIE_NAMES", flag: "cookie-names", defaultValue: "__Secure-authjs.session-token,authjs.session-token,__Secure-next-auth.session-token,next-auth.session-token", meaning: "Session cookies, in priority order; each is its own v5 HKDF salt, `next-auth` names also accept v4 tokens."),
        Setting(file: "token_formats", env: "SIDECAR_TOKEN_FORMATS", flag: "token-formats", defaultValue: "authjs-v5,nextauth-v4,jws", meaning: "Accepted token formats."),
        Setting(file: "clock_tolerance", env: "SIDECAR_CLOCK_TOLERANCE", flag: "clock-tolerance", defaultValue: "15", meaning: "Seconds of leeway on `exp`/`nbf` (Auth.js uses 15)."),
        Setting(file: "health_prefix", env: "SIDECAR_HEALTH_PREFIX", flag: "health-prefix", defaultValue: "/_sidecar", meaning: "Prefix of `healthz` (alive) and `readyz` (upstream reachable), answered without auth."),
        Setting(file: "shutdown_timeout", env: "SIDECAR_SHUTDOWN_TIMEOUT", flag: "shutdown-timeout", defaultValue: "25", meaning: "Seconds in-flight requests get after SIGTERM/SIGINT."),
        Setting(file: "upstream_connect_timeout", env: "SIDECAR_UPSTREAM_CONNECT_TIMEOUT", flag: "upstream-connect-timeout", defaultValue: "5", meaning: "Seconds to connect to the upstream (then 502)."),
        Setting(file: "upstream_max_idle", env: "SIDECAR_UPSTREAM_MAX_IDLE", flag: "upstream-max-idle", defaultValue: "1024", meaning: "Idle keep-alive upstream connections kept per event-loop thread (as nginx `keepalive`); beyond it, finished connections are closed."),
        Setting(file: "upstream_idle_timeout", env: "SIDECAR_UPSTREAM_IDLE_TIMEOUT", flag: "upstream-idle-timeout", defaultValue: "4", meaning: "Seconds an idle keep-alive upstream connection is kept (as nginx's upstream `keepalive_timeout`). Keep it below the upstream's own keep-alive timeout (uvicorn and hypercorn 5, gunicorn 2) so the sidecar never sends a request on a connection the upstream is closing."),
        Setting(file: "upstream_timeout", env: "SIDECAR_UPSTREAM_TIMEOUT", flag: "upstream-timeout", defaultValue: "60", meaning: "Seconds the upstream may make no progress: send no response head once it has the whole request, or take none of a request body it is sent (then 504; a slow client is the client's deadline, not this one), or send nothing more of a response (then it is cut) — as nginx's `proxy_read_timeout`/`proxy_send_timeout`."),
        Setting(file: "max_body_bytes", env: "SIDECAR_MAX_BODY_BYTES", flag: "max-body-bytes", defaultValue: "1073741824", meaning: "Largest request body, counted while streaming (413); 0 = no limit."),
        Setting(file: "max_header_bytes", env: "SIDECAR_MAX_HEADER_BYTES", flag: "max-header-bytes", defaultValue: "65536", meaning: "Largest request header block (431)."),
        Setting(file: "header_timeout", env: "SIDECAR_HEADER_TIMEOUT", flag: "header-timeout", defaultValue: "10", meaning: "Seconds a client may take to send a request's header block once it started (slowloris guard)."),
        Setting(file: "client_body_timeout", env: "SIDECAR_CLIENT_BODY_TIMEOUT", flag: "client-body-timeout", defaultValue: "60", meaning: "Seconds a client may pause while sending a request body (then 408 and close; as nginx's `client_body_timeout`)."),
        Setting(file: "client_send_timeout", env: "SIDECAR_CLIENT_SEND_TIMEOUT", flag: "client-send-timeout", defaultValue: "60", meaning: "Seconds a client may take none of a response the sidecar is relaying (then the connection is cut; as nginx's `send_timeout`)."),
        Setting(file: "max_connections", env: "SIDECAR_MAX_CONNECTIONS", flag: "max-connections", defaultValue: "10000", meaning: "Open client connections; more are answered 503 and closed."),
        Setting(file: "forward_auth_path", env: "SIDECAR_FORWARD_AUTH_PATH", flag: "forward-auth-path", defaultValue: "", meaning: "Forward-auth endpoint for nginx `auth_request`, Traefik ForwardAuth, Caddy `forward_auth` (e.g. `/_sidecar/auth`); empty (the default) disables it. Its 200 carries the decrypted claims: serve it only where the proxy alone reaches it."),
        Setting(file: "token_cache_size", env: "SIDECAR_TOKEN_CACHE_SIZE", flag: "token-cache-size", defaultValue: "10000", meaning: "Verified tokens remembered per event loop until their own `exp`; 0 disables the cache."),
        Setting(file: "idle_timeout", env: "SIDECAR_IDLE_TIMEOUT", flag: "idle-timeout", defaultValue: "60", meaning: "Seconds an idle keep-alive client connection stays open."),
        Setting(file: "tunnel_idle_timeout", env: "SIDECAR_TUNNEL_IDLE_TIMEOUT", flag: "tunnel-idle-timeout", defaultValue: "300", meaning: "Seconds a WebSocket tunnel may carry no bytes in either direction before both its connections are closed (as nginx's `proxy_read_timeout` on an upgraded connection)."),
        Setting(file: "strip_cookie", env: "SIDECAR_STRIP_COOKIE", flag: "strip-cookie", defaultValue: "false", meaning: "Remove the session cookie(s) before forwarding."),
        Setting(file: "strip_authorization", env: "SIDECAR_STRIP_AUTHORIZATION", flag: "strip-authorization", defaultValue: "false", meaning: "Remove a Bearer `Authorization` header before forwarding."),
        Setting(file: "identity_headers", env: "SIDECAR_IDENTITY_HEADERS", flag: "identity-headers", defaultValue: "sub=X-Auth-Sub,email=X-Auth-Email,name=X-Auth-Name,picture=X-Auth-Picture", meaning: "Claim path → header (`claim=Header`, comma list; dots reach into objects)."),
        Setting(file: "claims_header", env: "SIDECAR_CLAIMS_HEADER", flag: "claims-header", defaultValue: "X-Auth-Claims", meaning: "Header with base64url(JSON of all claims); empty disables it."),
        Setting(file: "max_identity_header_bytes", env: "SIDECAR_MAX_IDENTITY_HEADER_BYTES", flag: "max-identity-header-bytes", defaultValue: "8192", meaning: "An identity header longer than this is dropped (and logged), never truncated."),
        Setting(file: "cors_origins", env: "SIDECAR_CORS_ORIGINS", flag: "cors-origins", defaultValue: "", meaning: "Allowed CORS origins: exact (`https://app.example.com`) or one-label wildcard (`https://*.example.com`); empty disables CORS."),
        Setting(file: "cors_allow_credentials", env: "SIDECAR_CORS_ALLOW_CREDENTIALS", flag: "cors-allow-credentials", defaultValue: "true", meaning: "Send `Access-Control-Allow-Credentials: true` (then `*` origins are refused)."),
        Setting(file: "cors_allowed_methods", env: "SIDECAR_CORS_ALLOWED_METHODS", flag: "cors-allowed-methods", defaultValue: "GET,HEAD,POST,PUT,PATCH,DELETE,OPTIONS", meaning: "Methods a preflight may ask for."),
        Setting(file: "cors_allowed_headers", env: "SIDECAR_CORS_ALLOWED_HEADERS", flag: "cors-allowed-headers", defaultValue: "Authorization,Content-Type", meaning: "Request headers a preflight may ask for."),
        Setting(file: "cors_expose_headers", env: "SIDECAR_CORS_EXPOSE_HEADERS", flag: "cors-expose-headers", defaultValue: "X-Request-Id", meaning: "`Access-Control-Expose-Headers` on actual responses."),
        Setting(file: "cors_max_age", env: "SIDECAR_CORS_MAX_AGE", flag: "cors-max-age", defaultValue: "600", meaning: "`Access-Control-Max-Age` of preflight answers, seconds."),
        Setting(file: "cors_private_network", env: "SIDECAR_CORS_PRIVATE_NETWORK", flag: "cors-private-network", defaultValue: "false", meaning: "Answer Private Network Access preflights."),
        Setting(file: "cors_preflight_passthrough", env: "SIDECAR_CORS_PREFLIGHT_PASSTHROUGH", flag: "cors-preflight-passthrough", defaultValue: "false", meaning: "Forward allowed preflights to the upstream (unauthenticated) instead of answering them."),
        Setting(file: "cors_replace_upstream_headers", env: "SIDECAR_CORS_REPLACE_UPSTREAM_HEADERS", flag: "cors-replace-upstream-headers", defaultValue: "true", meaning: "Drop the upstream's own `Access-Control-*` headers so they are never duplicated."),
        Setting(file: "realm", env: "SIDECAR_REALM", flag: "realm", defaultValue: "authjs-sidecar", meaning: "Realm in `WWW-Authenticate`."),
        Setting(file: "metrics_listen", env: "SIDECAR_METRICS_LISTEN", flag: "metrics-listen", defaultValue: "", meaning: "Prometheus `/metrics` listener (`host:port`); empty = off."),
        Setting(file: "log_level", env: "SIDECAR_LOG_LEVEL", flag: "log-level", defaultValue: "info", meaning: "trace, debug, info, notice, warning, error or critical."),
        Setting(file: "log_format", env: "SIDECAR_LOG_FORMAT", flag: "log-format", defaultValue: "text", meaning: "Access-log format: `text` or `json`."),
        Setting(file: "access_log", env: "SIDECAR_ACCESS_LOG", flag: "access-log", defaultValue: "true", meaning: "One log line per request."),
    ]

    /// Secrets are read from the environment only, as Auth.js reads them; they have no flag and no file key.
    public static let secretVariables = ["AUTH_SECRET", "AUTH_SECRET_1", "AUTH_SECRET_2", "AUTH_SECRET_3", "NEXTAUTH_SECRET"]
    /// `--config` / `SIDECAR_CONFIG`: the optional YAML file (which also takes `routes:`).
    public static let configFileVariable = "SIDECAR_CONFIG"
}
