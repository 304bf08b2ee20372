// The MCP TypeScript SDK's own OAuth client against tokenledger, driven by
// tests/e2e/test_mcp_sdk.py. The SDK code that runs is the SDK's: `withOAuth` (the fetch
// wrapper that answers a 401 the way its transports do) and `auth()` (discovery,
// registration, authorization, code exchange, refresh). This script only supplies the
// OAuthClientProvider an application would (storage in memory) and asks the test, over
// one JSON line each way, to send the user through the sign-in pages.
//
// Environment: RESOURCE_URL (the stub MCP server), ISSUER, REDIRECT_URI, ACCESS_TOKEN_TTL
// (seconds), and for a pre-registered public client CLIENT_ID and PRE_REGISTERED_URI.
// Output: JSON lines on stdout, {"authorize": url} and, at the end, {"done": {...}}.

import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { withOAuth } from '@modelcontextprotocol/sdk/client/middleware.js';

const env = process.env;
const resourceUrl = env.RESOURCE_URL;
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function say(message) {
    process.stdout.write(JSON.stringify(message) + '\n');
}

async function ask(message) {
    say(message);
    const { value, done } = await lines.next();
    if (done) throw new Error('the test closed stdin');
    return JSON.parse(value);
}

function check(condition, message) {
    if (!condition) throw new Error(message);
}

let clientInformation = env.CLIENT_ID
    ? {
          client_id: env.CLIENT_ID,
          redirect_uris: [env.PRE_REGISTERED_URI],
          token_endpoint_auth_method: 'none'
      }
    : undefined;
let tokens;
let codeVerifier;
let authorizationUrl;
let signIns = 0;
let registrations = 0;
const state = crypto.randomUUID();

const provider = {
    get redirectUrl() {
        return env.REDIRECT_URI;
    },
    get clientMetadata() {
        return {
            client_name: 'MCP TypeScript SDK e2e',
            redirect_uris: [env.REDIRECT_URI],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
            token_endpoint_auth_method: 'none'
        };
    },
    state: () => state,
    clientInformation: () => clientInformation,
    saveClientInformation: info => {
        if (info.client_id !== clientInformation?.client_id) registrations += 1;
        clientInformation = info;
    },
    tokens: () => tokens,
    saveTokens: saved => {
        tokens = saved;
    },
    redirectToAuthorization: url => {
        authorizationUrl = url.toString();
    },
    saveCodeVerifier: verifier => {
        codeVerifier = verifier;
    },
    codeVerifier: () => codeVerifier
};

const oauthFetch = withOAuth(provider, resourceUrl)(fetch);

function call() {
    return oauthFetch(resourceUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' })
    });
}

async function signIn() {
    // No token yet: the call is answered 401, and auth() ends in a redirect.
    try {
        await call();
        throw new Error('the first call did not need authorization');
    } catch (error) {
        if (!(error instanceof UnauthorizedError) || authorizationUrl === undefined) throw error;
    }
    signIns += 1;
    const { location } = await ask({ authorize: authorizationUrl });
    const answer = new URL(location).searchParams;
    check(answer.get('state') === state, `state mismatch: ${answer.get('state')}`);
    check(answer.get('iss') === env.ISSUER, `iss mismatch: ${answer.get('iss')}`); // RFC 9207
    check(!answer.has('error'), `authorization refused: ${location}`);
    authorizationUrl = undefined;
    const result = await auth(provider, { serverUrl: resourceUrl, authorizationCode: answer.get('code') });
    check(result === 'AUTHORIZED', `auth() after the code: ${result}`);
}

function held() {
    return { access_token: tokens.access_token, refresh_token: tokens.refresh_token };
}

await signIn();
const firstCall = await call();
check(firstCall.status === 200, `first call: ${firstCall.status} ${await firstCall.text()}`);
const first = held();

// The access token expires; the SDK does not look at expires_in, it waits for the 401.
await sleep(Number(env.ACCESS_TOKEN_TTL) * 1000 + 500);
const secondCall = await call();
check(secondCall.status === 200, `call after expiry: ${secondCall.status}`);
check(authorizationUrl === undefined, 'the SDK sent the user to sign in again instead of refreshing');
const second = held();

say({
    done: {
        first,
        second,
        client_id: clientInformation.client_id,
        token_endpoint_auth_method: clientInformation.token_endpoint_auth_method ?? null,
        has_secret: clientInformation.client_secret !== undefined,
        sign_ins: signIns,
        registrations
    }
});
process.exit(0);
