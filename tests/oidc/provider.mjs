// A real OpenID provider for jitgate's tests: the certified `oidc-provider` package on
// 127.0.0.1 with an ephemeral port, its development login form (any password), and test users
// whose groups jitgate maps to Cedar groups.
//
// Environment: JITGATE_REDIRECT_URI (the jitgate callback the client may use),
// JITGATE_CLIENT_SECRET. Prints one JSON line, {"issuer": "http://127.0.0.1:<port>"}, once it
// listens. Reads commands on standard input: `advance <seconds>` moves its clock forward, as
// the test moves jitgate's; it stops when its standard input closes (the test is gone).
import http from 'node:http';
import readline from 'node:readline';
import Provider from 'oidc-provider';

// The provider's clock: real time plus what the test has moved it by.
let offsetMs = 0;
const realNow = Date.now;
Date.now = () => realNow() + offsetMs;

const USERS = {
  erin: { groups: ['dba'], email: 'erin@example.com' },
  sam: { groups: ['security'], email: 'sam@example.com' },
  alice: { groups: ['oncall'], email: 'alice@example.com' },
};

const redirectUri = process.env.JITGATE_REDIRECT_URI;
const clientSecret = process.env.JITGATE_CLIENT_SECRET;
if (!redirectUri || !clientSecret) {
  console.error('set JITGATE_REDIRECT_URI and JITGATE_CLIENT_SECRET');
  process.exit(2);
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'jitgate-ui',
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      require_auth_time: true,
    }],
    pkce: { required: () => true },
    // The groups and e-mail go into the id_token itself, which is what jitgate reads.
    conformIdTokenClaims: false,
    claims: { openid: ['sub', 'groups', 'email'] },
    cookies: { keys: ['jitgate-test-provider-cookie-key'] },
    findAccount: async (ctx, id) => ({
      accountId: id,
      claims: async () => ({ sub: id, ...(USERS[id] ?? { groups: [] }) }),
    }),
    // jitgate is a first-party client: no consent screen.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        return ctx.oidc.provider.Grant.find(grantId);
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid');
      grant.addOIDCClaims(['sub', 'groups', 'email']);
      await grant.save();
      return grant;
    },
    ttl: { IdToken: 600, AccessToken: 600, AuthorizationCode: 60, Session: 3600, Interaction: 600, Grant: 3600 },
  });
  server.on('request', provider.callback());
  console.log(JSON.stringify({ issuer }));
});

const commands = readline.createInterface({ input: process.stdin });
commands.on('line', (line) => {
  const [command, seconds] = line.trim().split(/\s+/);
  if (command === 'advance') {
    offsetMs += Number(seconds) * 1000;
    console.log(JSON.stringify({ advanced: Number(seconds) }));
  }
});
commands.on('close', () => process.exit(0));
