// Local OpenID Connect provider for Tokenwarden's integration tests and
// `make dev`. It wraps oidc-provider with short token lifetimes, strict
// refresh-token rotation, scripted (dev) interactions, request counters and
// fault injection, so tests can watch how Tokenwarden treats a real peer.
//
// Configuration comes from defaults, then OIDC_PEER_* environment variables,
// then flags (--port N, --config JSON), then a positional JSON argument.
// README.md in this folder lists every key.
//
// Tokens, codes and secrets are never written to the log.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as querystring from 'node:querystring';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import LRU from 'oidc-provider/lib/helpers/lru.js';

const CLIENT_ID = 'tokenwarden';
const PUBLIC_CLIENT_ID = 'tokenwarden-public';
const RESOURCE_SERVER_CLIENT_ID = 'tokenwarden-rs';
const ADMIN_PREFIX = '/__admin';

const DEFAULTS = {
  host: '127.0.0.1',
  port: 0,
  accessTokenTTL: 5,
  clientCredentialsTTL: undefined, // falls back to accessTokenTTL
  refreshTokenTTL: 3600,
  idTokenTTL: 3600,
  authorizationCodeTTL: 60,
  deviceCodeTTL: 600,
  // Seconds a device client should wait between polls (RFC 8628 interval);
  // short so tests do not wait out the 5 s default.
  deviceInterval: 1,
  sessionTTL: 3600,
  clientSecret: 'tokenwarden-dev-secret',
  resourceServerSecret: 'tokenwarden-rs-dev-secret',
  redirectUris: ['http://127.0.0.1/v1/oauth/callback', 'http://localhost/v1/oauth/callback'],
  scopes: ['openid', 'offline_access', 'email', 'profile', 'api:read', 'api:write'],
  // Real providers differ here; the peer defaults to issuing a refresh token
  // whenever the client may use the refresh_token grant so that Tokenwarden
  // works without prompt=consent. Set true for oidc-provider's strict rule.
  requireOfflineAccess: false,
  // golang.org/x/oauth2's DeviceAuth sends only client_id, as Google and
  // Microsoft accept; oidc-provider wants confidential clients to
  // authenticate there. When true, the peer fills in the secret.
  deviceAuthWithoutSecret: true,
  // Seconds a rotated refresh token stays usable after its rotation (0:
  // none; a reuse is detected and revokes the grant, oidc-provider's own
  // rule). Within the window a second request with the old token gets the
  // reply the first one got, as Okta's grace period, Auth0's reuse
  // interval and Keycloak's "refresh token max reuse" allow: a client
  // whose reply was lost on the way can still have it.
  refreshReuseGrace: 0,
};

const ENV = {
  OIDC_PEER_HOST: ['host', String],
  OIDC_PEER_PORT: ['port', Number],
  OIDC_PEER_ACCESS_TOKEN_TTL: ['accessTokenTTL', Number],
  OIDC_PEER_CLIENT_CREDENTIALS_TTL: ['clientCredentialsTTL', Number],
  OIDC_PEER_REFRESH_TOKEN_TTL: ['refreshTokenTTL', Number],
  OIDC_PEER_ID_TOKEN_TTL: ['idTokenTTL', Number],
  OIDC_PEER_AUTHORIZATION_CODE_TTL: ['authorizationCodeTTL', Number],
  OIDC_PEER_DEVICE_CODE_TTL: ['deviceCodeTTL', Number],
  OIDC_PEER_DEVICE_INTERVAL: ['deviceInterval', Number],
  OIDC_PEER_SESSION_TTL: ['sessionTTL', Number],
  OIDC_PEER_CLIENT_SECRET: ['clientSecret', String],
  OIDC_PEER_RS_CLIENT_SECRET: ['resourceServerSecret', String],
  OIDC_PEER_REDIRECT_URIS: ['redirectUris', (v) => v.split(',').map((s) => s.trim()).filter(Boolean)],
  OIDC_PEER_SCOPES: ['scopes', (v) => v.split(/[\s,]+/).filter(Boolean)],
  OIDC_PEER_REQUIRE_OFFLINE_ACCESS: ['requireOfflineAccess', (v) => v === '1' || v === 'true'],
  OIDC_PEER_DEVICE_AUTH_WITHOUT_SECRET: ['deviceAuthWithoutSecret', (v) => v === '1' || v === 'true'],
  OIDC_PEER_REFRESH_REUSE_GRACE: ['refreshReuseGrace', Number],
};

function fail(msg) {
  console.error(`oidc-peer: ${msg}`);
  process.exit(2);
}

function parseJSONConfig(text, where) {
  try {
    const parsed = JSON.parse(text);
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new Error('not a JSON object');
    }
    return parsed;
  } catch (err) {
    return fail(`${where} is not a JSON object: ${err.message}`);
  }
}

function loadConfig() {
  const config = { ...DEFAULTS };
  for (const [name, [key, parse]] of Object.entries(ENV)) {
    if (process.env[name] !== undefined && process.env[name] !== '') {
      config[key] = parse(process.env[name]);
    }
  }

  let args;
  try {
    args = parseArgs({
      allowPositionals: true,
      options: {
        port: { type: 'string' },
        config: { type: 'string' },
      },
    });
  } catch (err) {
    return fail(err.message);
  }
  if (args.values.port !== undefined) config.port = Number(args.values.port);
  if (args.values.config !== undefined) Object.assign(config, parseJSONConfig(args.values.config, '--config'));
  for (const positional of args.positionals) {
    Object.assign(config, parseJSONConfig(positional, 'argument'));
  }

  config.clientCredentialsTTL ??= config.accessTokenTTL;
  for (const key of ['port', 'accessTokenTTL', 'clientCredentialsTTL', 'refreshTokenTTL', 'idTokenTTL',
    'authorizationCodeTTL', 'deviceCodeTTL', 'deviceInterval', 'sessionTTL']) {
    const value = config[key];
    if (!Number.isInteger(value) || value < 0 || (key !== 'port' && value === 0)) {
      fail(`${key} must be a ${key === 'port' ? 'non-negative' : 'positive'} integer, got ${String(value)}`);
    }
  }
  if (!Number.isInteger(config.refreshReuseGrace) || config.refreshReuseGrace < 0) {
    fail(`refreshReuseGrace must be a non-negative integer, got ${String(config.refreshReuseGrace)}`);
  }
  if (!Array.isArray(config.redirectUris) || config.redirectUris.length === 0) {
    fail('redirectUris must be a non-empty list');
  }
  for (const uri of config.redirectUris) {
    if (!URL.canParse(uri)) fail(`redirect URI ${JSON.stringify(uri)} is not a URL`);
  }
  if (!config.scopes.includes('openid')) config.scopes.unshift('openid');
  return config;
}

// Counters answer "how often did Tokenwarden call the peer", which is how
// tests prove that refreshes are deduplicated and backed off.
function newStats() {
  return {
    token_requests: 0,
    token_by_grant_type: {},
    token_errors_by_grant_type: {},
    faults_injected: 0,
    refresh_reuse_grace_hits: 0,
    endpoints: {},
  };
}

function bump(map, key) {
  map[key] = (map[key] ?? 0) + 1;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

// Tests start their callback server on a free port after the peer is up, so
// loopback redirect URIs match on everything but the port, as RFC 8252 asks
// of native clients; oidc-provider only does that for application_type native.
function loopbackWithoutPort(value) {
  const parsed = URL.parse(value);
  if (!parsed || parsed.protocol !== 'http:' || !LOOPBACK_HOSTS.has(parsed.hostname)) {
    return undefined;
  }
  parsed.port = '';
  return parsed.href;
}

function readRawBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > 64 * 1024) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJSON(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function validateFault(input) {
  const fault = {
    count: input.count ?? 1,
    status: input.status ?? 503,
    retry_after: input.retry_after,
    error: input.error,
    malformed: input.malformed === true,
    delay_ms: input.delay_ms ?? 0,
    grant_type: input.grant_type,
  };
  if (!Number.isInteger(fault.count) || fault.count < 1) throw new Error('count must be a positive integer');
  if (!Number.isInteger(fault.status) || fault.status < 100 || fault.status > 599) throw new Error('status must be an HTTP status code');
  if (fault.retry_after !== undefined && !Number.isInteger(fault.retry_after) && typeof fault.retry_after !== 'string') {
    throw new Error('retry_after must be an integer number of seconds or an HTTP date');
  }
  if (!Number.isInteger(fault.delay_ms) || fault.delay_ms < 0 || fault.delay_ms > 120000) throw new Error('delay_ms must be between 0 and 120000');
  if (fault.grant_type !== undefined && typeof fault.grant_type !== 'string') throw new Error('grant_type must be a string');
  if (fault.error !== undefined && typeof fault.error !== 'string') throw new Error('error must be a string');
  return fault;
}

function sleep(ms) {
  return new Promise((resolve) => { setTimeout(resolve, ms); });
}

async function writeFault(res, fault) {
  if (fault.delay_ms > 0) await sleep(fault.delay_ms);
  const headers = { 'cache-control': 'no-store' };
  if (fault.retry_after !== undefined) headers['retry-after'] = String(fault.retry_after);
  if (fault.malformed) {
    const text = '{"access_token": "truncated';
    res.writeHead(fault.status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    return;
  }
  const error = fault.error ?? (fault.status >= 500 || fault.status === 429 ? 'temporarily_unavailable' : 'invalid_request');
  sendJSON(res, fault.status, { error, error_description: 'injected by oidc-peer' }, headers);
}

function makeJWKS() {
  // A fresh signing key per run: ID tokens from an old run must not verify.
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' }] };
}

// The in-memory store oidc-provider uses by default keeps about a thousand
// entries, dropping the oldest: with dozens of links rotating 5-second
// tokens that is a minute's worth, after which an unused code, refresh
// token or grant vanishes and the peer answers invalid_grant, as no real
// server would. This one holds a million; entries still expire by their
// own TTL.
function memoryAdapter() {
  const store = new LRU({ maxSize: 1_000_000 });
  return (model) => new MemoryAdapter(model, store, 0);
}

function providerConfiguration(config) {
  const authCodeGrants = [
    'authorization_code',
    'refresh_token',
    'client_credentials',
    'urn:ietf:params:oauth:grant-type:device_code',
  ];
  return {
    adapter: memoryAdapter(),
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: config.clientSecret,
        client_name: 'Tokenwarden',
        grant_types: authCodeGrants,
        response_types: ['code'],
        redirect_uris: config.redirectUris,
        post_logout_redirect_uris: config.redirectUris,
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: PUBLIC_CLIENT_ID,
        client_name: 'Tokenwarden (public client)',
        grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
        response_types: ['code'],
        redirect_uris: config.redirectUris,
        token_endpoint_auth_method: 'none',
      },
      {
        // Stands in for an API that checks tokens it did not ask for.
        client_id: RESOURCE_SERVER_CLIENT_ID,
        client_secret: config.resourceServerSecret,
        grant_types: [],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    // Per-client registration only allows one auth method; the peer accepts
    // basic and post for every confidential client instead.
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'none'],
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    jwks: makeJWKS(),
    scopes: config.scopes,
    responseTypes: ['code', 'none'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    async findAccount(_ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          const email = sub.includes('@') ? sub : `${sub}@peer.test`;
          return {
            sub, email, email_verified: true, name: sub,
          };
        },
      };
    },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      deviceFlow: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      userinfo: { enabled: true },
    },
    pkce: {
      // Every authorization request needs S256 PKCE (the only method v9 knows).
      required: () => true,
    },
    rotateRefreshToken: true,
    async issueRefreshToken(_ctx, client, source) {
      if (!client.grantTypeAllowed('refresh_token')) return false;
      return !config.requireOfflineAccess || source.scopes.has('offline_access');
    },
    // Refresh tokens must outlive the scripted browser session.
    async expiresWithSession() {
      return false;
    },
    ttl: {
      AccessToken: config.accessTokenTTL,
      ClientCredentials: config.clientCredentialsTTL,
      RefreshToken: config.refreshTokenTTL,
      IdToken: config.idTokenTTL,
      AuthorizationCode: config.authorizationCodeTTL,
      DeviceCode: config.deviceCodeTTL,
      Interaction: 600,
      Session: config.sessionTTL,
      Grant: Math.max(config.refreshTokenTTL, config.sessionTTL),
    },
  };
}

function main() {
  const config = loadConfig();
  const stats = { current: newStats() };
  let faults = [];

  const server = http.createServer();

  server.listen(config.port, config.host, () => {
    const { port } = server.address();
    const issuer = `http://${config.host}:${port}`;
    const provider = new Provider(issuer, providerConfiguration(config));

    const original = provider.Client.prototype.redirectUriAllowed;
    provider.Client.prototype.redirectUriAllowed = function redirectUriAllowed(value) {
      if (original.call(this, value)) return true;
      const wanted = loopbackWithoutPort(value);
      return wanted !== undefined && this.redirectUris.some((uri) => loopbackWithoutPort(uri) === wanted);
    };

    const tokenPath = new URL(provider.urlFor('token')).pathname;
    const deviceAuthPath = new URL(provider.urlFor('device_authorization')).pathname;
    const secrets = new Map([[CLIENT_ID, config.clientSecret]]);

    async function fillDeviceAuthSecret(req) {
      if (!config.deviceAuthWithoutSecret || req.method !== 'POST' || req.headers.authorization) return;
      const raw = await readRawBody(req);
      const params = new URLSearchParams(raw);
      const secret = secrets.get(params.get('client_id'));
      if (secret !== undefined && !params.has('client_secret') && !params.has('client_assertion')) {
        params.set('client_secret', secret);
      }
      req.body = params.toString();
    }

    // Counts requests after the provider handled them, so grant_type is the
    // one the provider parsed, and failures are counted as well.
    provider.use(async (ctx, next) => {
      await next();
      const route = ctx.oidc?.route;
      if (!route) return;
      if (route === 'device_authorization' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
        ctx.body.interval = config.deviceInterval;
      }
      bump(stats.current.endpoints, route);
      if (route === 'token') {
        const grantType = ctx.oidc.params?.grant_type ?? ctx.oidc.body?.grant_type ?? 'unknown';
        stats.current.token_requests += 1;
        bump(stats.current.token_by_grant_type, grantType);
        if (ctx.status >= 400) bump(stats.current.token_errors_by_grant_type, grantType);
      }
    });

    provider.on('server_error', (_ctx, err) => {
      console.error(`oidc-peer: server_error: ${err.message}`);
    });

    const handleProvider = provider.callback();

    async function handleAdmin(req, res, path) {
      if (req.method === 'GET' && path === '/stats') {
        sendJSON(res, 200, stats.current);
        return;
      }
      if (req.method === 'POST' && path === '/reset') {
        stats.current = newStats();
        faults = [];
        sendJSON(res, 200, { reset: true });
        return;
      }
      if (path === '/faults') {
        if (req.method === 'GET') {
          sendJSON(res, 200, { faults });
          return;
        }
        if (req.method === 'DELETE') {
          faults = [];
          sendJSON(res, 200, { faults });
          return;
        }
        if (req.method === 'POST') {
          let input;
          try {
            input = JSON.parse(await readRawBody(req) || '{}');
            const list = Array.isArray(input) ? input : [input];
            faults.push(...list.map(validateFault));
          } catch (err) {
            sendJSON(res, 400, { error: 'invalid_request', error_description: err.message });
            return;
          }
          sendJSON(res, 200, { faults });
          return;
        }
      }
      sendJSON(res, 404, { error: 'not_found', error_description: `no admin endpoint ${req.method} ${path}` });
    }

    // Faults are checked before the provider sees the request so that an
    // injected failure never consumes a code or rotates a refresh token.
    async function maybeInjectFault(req, res) {
      if (faults.length === 0 || req.method !== 'POST') return false;
      const raw = await readRawBody(req);
      const grantType = querystring.parse(raw).grant_type;
      const index = faults.findIndex((f) => f.grant_type === undefined || f.grant_type === grantType);
      if (index === -1) {
        // Hand the already-read body on; oidc-provider accepts req.body.
        req.body = raw;
        return false;
      }
      const fault = faults[index];
      fault.count -= 1;
      if (fault.count === 0) faults.splice(index, 1);
      stats.current.token_requests += 1;
      stats.current.faults_injected += 1;
      bump(stats.current.endpoints, 'token');
      bump(stats.current.token_by_grant_type, grantType ?? 'unknown');
      bump(stats.current.token_errors_by_grant_type, grantType ?? 'unknown');
      console.log(`oidc-peer: injected fault status=${fault.status} grant_type=${grantType ?? 'unknown'}${fault.malformed ? ' malformed' : ''}`);
      await writeFault(res, fault);
      return true;
    }

    // Refresh replies by the refresh token that obtained them, for
    // config.refreshReuseGrace seconds (keyed by a hash: the peer keeps no
    // token it does not have to).
    const graceReplies = new Map();
    async function replayWithinGrace(req, res) {
      if (config.refreshReuseGrace === 0 || req.method !== 'POST') return false;
      if (req.body === undefined) req.body = await readRawBody(req);
      const form = querystring.parse(req.body);
      if (form.grant_type !== 'refresh_token' || typeof form.refresh_token !== 'string') return false;
      const key = crypto.createHash('sha256').update(form.refresh_token).digest('hex');
      const now = Date.now();
      for (const [k, v] of graceReplies) if (v.until <= now) graceReplies.delete(k);
      const cached = graceReplies.get(key);
      if (cached) {
        stats.current.token_requests += 1;
        stats.current.refresh_reuse_grace_hits += 1;
        bump(stats.current.endpoints, 'token');
        bump(stats.current.token_by_grant_type, 'refresh_token');
        console.log('oidc-peer: rotated refresh token reused within the grace window; the earlier reply is sent again');
        res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' });
        res.end(cached.body);
        return true;
      }
      const chunks = [];
      const write = res.write.bind(res);
      const end = res.end.bind(res);
      res.write = (chunk, ...rest) => {
        if (chunk && typeof chunk !== 'function') chunks.push(Buffer.from(chunk));
        return write(chunk, ...rest);
      };
      res.end = (chunk, ...rest) => {
        if (chunk && typeof chunk !== 'function') chunks.push(Buffer.from(chunk));
        if (res.statusCode === 200) {
          graceReplies.set(key, { until: Date.now() + config.refreshReuseGrace * 1000, body: Buffer.concat(chunks) });
        }
        return end(chunk, ...rest);
      };
      return false;
    }

    server.on('request', (req, res) => {
      const path = req.url.split('?')[0];
      (async () => {
        if (path === ADMIN_PREFIX || path.startsWith(`${ADMIN_PREFIX}/`)) {
          await handleAdmin(req, res, path.slice(ADMIN_PREFIX.length));
          return;
        }
        if (path === tokenPath && await maybeInjectFault(req, res)) return;
        if (path === tokenPath && await replayWithinGrace(req, res)) return;
        if (path === deviceAuthPath) await fillDeviceAuthSecret(req);
        handleProvider(req, res);
      })().catch((err) => {
        console.error(`oidc-peer: request failed: ${err.message}`);
        if (!res.headersSent) sendJSON(res, 500, { error: 'server_error' });
        else res.destroy();
      });
    });

    // Tests wait for this exact line; the issuer tells them the chosen port.
    console.log(`oidc-peer ready issuer=${issuer}`);
    console.log(`oidc-peer: clients ${CLIENT_ID}, ${PUBLIC_CLIENT_ID}, ${RESOURCE_SERVER_CLIENT_ID}; access token TTL ${config.accessTokenTTL}s, refresh token TTL ${config.refreshTokenTTL}s; redirect URIs ${config.redirectUris.join(' ')}`);
  });

  server.on('error', (err) => fail(`cannot listen on ${config.host}:${config.port}: ${err.message}`));

  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // A parent that dies without stopping the peer closes this pipe, so the
  // peer never outlives the test binary that started it.
  if (process.env.OIDC_PEER_EXIT_ON_STDIN_EOF === '1') {
    process.stdin.on('end', stop);
    process.stdin.on('error', stop);
    process.stdin.resume();
  }
}

main();
