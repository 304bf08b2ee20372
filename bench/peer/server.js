// The peer in bench/suite.py: node-oidc-provider 9 in one Node process, auth code + PKCE
// + rotating refresh tokens for one public client, its state in PostgreSQL through an
// adapter on the library's documented interface (upsert, find, findByUid,
// findByUserCode, consume, destroy, revokeByGrantId). Access tokens are RS256 JWTs, as
// ours are. Env: DATABASE_URL, PORT, ISSUER. Bench-only: POST /bench/codes?n=N writes
// N grants and authorization codes in-process (as bench/suite.py writes ours straight
// into the ledger: the login pages are not what is measured) and answers
// [{code, verifier}]; the codes are then exchanged over HTTP like any client would.
import crypto from 'node:crypto';
import Provider from 'oidc-provider';
import pg from 'pg';

const { DATABASE_URL, PORT = '3000', ISSUER = `http://127.0.0.1:${PORT}` } = process.env;
const REDIRECT_URI = 'http://127.0.0.1:5000/cb';
const RESOURCE = 'https://api.example.com';
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 10 });

await pool.query(`
  create table if not exists oidc_payloads (
    id text not null, type text not null, payload jsonb not null,
    grant_id text, user_code text, uid text,
    expires_at timestamptz, consumed_at timestamptz,
    primary key (id, type));
  create index if not exists oidc_payloads_grant on oidc_payloads (grant_id);
  create index if not exists oidc_payloads_uid on oidc_payloads (uid);
  create index if not exists oidc_payloads_user_code on oidc_payloads (user_code);`);

function row(r) {
  if (r.rows.length === 0) return undefined;
  const { payload, consumed_at: consumed } = r.rows[0];
  return consumed ? { ...payload, consumed: Math.floor(consumed.getTime() / 1000) } : payload;
}

const LIVE = '(expires_at is null or expires_at > now())';

class PostgresAdapter {
  constructor(name) { this.name = name; }

  async upsert(id, payload, expiresIn) {
    await pool.query(
      `insert into oidc_payloads (id, type, payload, grant_id, user_code, uid, expires_at)
       values ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
       on conflict (id, type) do update set payload = excluded.payload,
         grant_id = excluded.grant_id, user_code = excluded.user_code, uid = excluded.uid,
         expires_at = excluded.expires_at`,
      [id, this.name, payload, payload.grantId ?? null, payload.userCode ?? null,
        payload.uid ?? null, expiresIn ?? null],
    );
  }

  async find(id) {
    return row(await pool.query(
      `select payload, consumed_at from oidc_payloads where id = $1 and type = $2 and ${LIVE}`,
      [id, this.name],
    ));
  }

  async findByUid(uid) {
    return row(await pool.query(
      `select payload, consumed_at from oidc_payloads where uid = $1 and type = $2 and ${LIVE}`,
      [uid, this.name],
    ));
  }

  async findByUserCode(userCode) {
    return row(await pool.query(
      `select payload, consumed_at from oidc_payloads
        where user_code = $1 and type = $2 and ${LIVE}`,
      [userCode, this.name],
    ));
  }

  async consume(id) {
    await pool.query(
      'update oidc_payloads set consumed_at = now() where id = $1 and type = $2',
      [id, this.name],
    );
  }

  async destroy(id) {
    await pool.query('delete from oidc_payloads where id = $1 and type = $2', [id, this.name]);
  }

  async revokeByGrantId(grantId) {
    await pool.query(
      'delete from oidc_payloads where grant_id = $1 and type = $2', [grantId, this.name],
    );
  }
}

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench', use: 'sig', alg: 'RS256' };

const provider = new Provider(ISSUER, {
  adapter: PostgresAdapter,
  clients: [{
    client_id: 'bench',
    token_endpoint_auth_method: 'none',
    application_type: 'native',
    redirect_uris: [REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  }],
  jwks: { keys: [jwk] },
  findAccount: async (_ctx, id) => ({ accountId: id, async claims() { return { sub: id }; } }),
  scopes: ['openid', 'offline_access', 'mcp'],
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'mcp',
        audience: RESOURCE,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 3600,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  issueRefreshToken: async () => true,
  ttl: { AccessToken: 3600, AuthorizationCode: 600, RefreshToken: 14 * 86400, Grant: 14 * 86400 },
});

provider.use(async (ctx, next) => {
  if (ctx.path !== '/bench/codes') return next();
  const n = Number(ctx.query.n || 1);
  const client = await provider.Client.find('bench');
  const out = [];
  for (let i = 0; i < n; i += 1) {
    const accountId = `user-${i % 100}`;
    const grant = new provider.Grant({ accountId, clientId: 'bench' });
    grant.addOIDCScope('offline_access');
    grant.addResourceScope(RESOURCE, 'mcp');
    const grantId = await grant.save();
    const verifier = crypto.randomBytes(48).toString('base64url');
    const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
    const code = new provider.AuthorizationCode({
      accountId,
      client,
      grantId,
      scope: 'offline_access mcp', // no openid: no ID token, one signature a response as ours
      resource: RESOURCE,
      redirectUri: REDIRECT_URI,
      codeChallenge: challenge,
      codeChallengeMethod: 'S256',
      authTime: Math.floor(Date.now() / 1000),
    });
    out.push({ code: await code.save(), verifier });
  }
  ctx.body = out;
});

provider.listen(Number(PORT), '127.0.0.1', () => console.log(`peer listening on ${PORT}`));
