// The page of tests/browser/test_openfeature_web.py, bundled by esbuild: OpenFeature's web SDK with the
// official OFREP web provider pointed at the content API, as a shop would use them. It renders the
// hero slot's content from the flag's metadata (as text) and leaves what it saw in window.openfeatureResult.
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const query = new URLSearchParams(window.location.search);
const settings = {
  api: query.get('api'),
  user: query.get('user'),
  session: query.get('session'),
  pollInterval: Number(query.get('poll') || 0),
};

async function main() {
  const changes = [];
  OpenFeature.addHandler(ProviderEvents.ConfigurationChanged, (event) => changes.push(event.flagsChanged));
  await OpenFeature.setContext({ targetingKey: settings.user, session: settings.session });
  await OpenFeature.setProviderAndWait(
    new OFREPWebProvider({ baseUrl: settings.api, pollInterval: settings.pollInterval }),
  );
  const client = OpenFeature.getClient();
  const read = () => {
    const details = client.getStringDetails('hero', 'code-default');
    const content = details.flagMetadata.content ? JSON.parse(details.flagMetadata.content) : null;
    document.getElementById('hero').textContent = content ? content.body : details.value;
    return {
      value: details.value,
      variant: details.variant,
      reason: details.reason,
      errorCode: details.errorCode ?? null,
      rule: details.flagMetadata.rule ?? null,
      decisionId: details.flagMetadata.decisionId ?? null,
      missing: client.getStringDetails('no-such-slot', 'code-default').errorCode,
    };
  };
  window.openfeatureResult = { first: read(), changes };
  window.openfeatureRead = read;
}

main().catch((error) => { window.openfeatureResult = { error: String(error) }; });
