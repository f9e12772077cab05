// k6 scenario: POST /run at a ramping arrival rate of 10 -> 25 -> 50 requests per second.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8000 loadtest/k6_run.js                      # the local stack (make local)
//   k6 run -e BASE_URL=https://<api-id>.execute-api.<region>.amazonaws.com/api -e AUTH=sigv4 \
//          -e AWS_REGION=<region> -e AWS_ACCESS_KEY_ID=... -e AWS_SECRET_ACCESS_KEY=... [-e AWS_SESSION_TOKEN=...] \
//          -e COMPETITION_URL=https://www.kaggle.com/competitions/titanic loadtest/k6_run.js
//
// Parameters (-e NAME=value): BASE_URL (required), AUTH (none | sigv4; deployed stages need sigv4: the routes use IAM
// authorization), COMPETITION_URL, EMAIL_DOMAIN (each request gets its own address there), RATES (default "10,25,50"),
// STAGE (how long each rate is held, default "1m"), RAMP (how long each step up takes, default "10s"), MAX_VUS.
//
// Every answer must be 202 (admitted) or a clean 429 (all KAGENT_MAX_RUNNING slots taken: JSON error + Retry-After).
// Admitted runs really run: against a deployed stage each one costs a Fargate task (and LLM tokens, if configured),
// so keep KAGENT_MAX_RUNNING small there. The offline figures in the README come from loadtest/fanout.py.
import http from 'k6/http';
import { check, fail } from 'k6';
import { Counter, Rate } from 'k6/metrics';
import { Endpoint, SignatureV4 } from 'https://jslib.k6.io/aws/0.12.3/signature.js';

const BASE_URL = (__ENV.BASE_URL || '').replace(/\/+$/, '');
const AUTH = __ENV.AUTH || 'none';
const COMPETITION_URL = __ENV.COMPETITION_URL || 'https://www.kaggle.com/competitions/titanic';
const EMAIL_DOMAIN = __ENV.EMAIL_DOMAIN || 'example.com';
const RATES = (__ENV.RATES || '10,25,50').split(',').map((r) => parseInt(r, 10));
const STAGE = __ENV.STAGE || '1m';
const RAMP = __ENV.RAMP || '10s';
const MAX_VUS = parseInt(__ENV.MAX_VUS || '200', 10);

if (!BASE_URL) {
  fail('set BASE_URL, e.g. -e BASE_URL=http://127.0.0.1:8000');
}
if (RATES.some((r) => !(r > 0))) {
  fail(`RATES must be positive whole numbers separated by commas, got ${__ENV.RATES}`);
}
if (!['none', 'sigv4'].includes(AUTH)) {
  fail(`AUTH must be none or sigv4, got ${AUTH}`);
}
if (AUTH === 'sigv4' && !(__ENV.AWS_REGION && __ENV.AWS_ACCESS_KEY_ID && __ENV.AWS_SECRET_ACCESS_KEY)) {
  fail('AUTH=sigv4 needs AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
}

const stages = [];
for (const rate of RATES) {
  stages.push({ target: rate, duration: RAMP }, { target: rate, duration: STAGE });
}

export const options = {
  scenarios: {
    post_run: {
      executor: 'ramping-arrival-rate',
      startRate: RATES[0],
      timeUnit: '1s',
      preAllocatedVUs: Math.min(MAX_VUS, 2 * RATES[RATES.length - 1]),
      maxVUs: MAX_VUS,
      stages,
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'], // 202 and 429 are expected answers (see setResponseCallback below)
    server_errors: ['count==0'],
    unclean_429: ['count==0'],
    'http_req_duration{status:202}': ['p(95)<2000'],
    'http_req_duration{status:429}': ['p(95)<2000'],
  },
};

http.setResponseCallback(http.expectedStatuses(202, 429));

const serverErrors = new Counter('server_errors');
const unclean429 = new Counter('unclean_429');
const admitted = new Rate('admitted');

const signer =
  AUTH === 'sigv4'
    ? new SignatureV4({
        service: 'execute-api',
        region: __ENV.AWS_REGION,
        credentials: {
          accessKeyId: __ENV.AWS_ACCESS_KEY_ID,
          secretAccessKey: __ENV.AWS_SECRET_ACCESS_KEY,
          sessionToken: __ENV.AWS_SESSION_TOKEN,
        },
        uriEscapePath: true,
        applyChecksum: false,
      })
    : null;

function postRun(query) {
  if (signer === null) {
    const qs = Object.entries(query)
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
      .join('&');
    return http.post(`${BASE_URL}/run?${qs}`, null, { tags: { name: 'POST /run' } });
  }
  const base = new URL(BASE_URL);
  const signed = signer.sign({
    method: 'POST',
    endpoint: new Endpoint(`${base.protocol}//${base.host}`),
    path: `${base.pathname.replace(/\/+$/, '')}/run`,
    query,
    headers: {},
  });
  return http.post(signed.url, null, { headers: signed.headers, tags: { name: 'POST /run' } });
}

export default function () {
  const email = `k6-${__VU}-${__ITER}@${EMAIL_DOMAIN}`;
  const response = postRun({ url: COMPETITION_URL, email });
  admitted.add(response.status === 202);
  if (response.status >= 500 || response.status === 0) {
    serverErrors.add(1);
  }
  if (response.status === 429) {
    let clean = false;
    try {
      clean = Boolean(response.json('error')) && parseInt(response.headers['Retry-After'], 10) > 0;
    } catch (error) {
      clean = false;
    }
    if (!clean) {
      unclean429.add(1);
    }
  }
  check(response, {
    'admitted (202) or refused cleanly (429)': (r) => r.status === 202 || r.status === 429,
    'a 202 names its run': (r) => r.status !== 202 || /^[0-9a-f-]{36}$/.test(r.json('run_id')),
  });
}
