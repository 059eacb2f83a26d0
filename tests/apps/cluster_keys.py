"""The multi-node security test's app: a route behind an API key (with whatever usage
plan the key has) and one that reads a secret, served by every node."""

from squall import App

app = App("clusterkeys")


@app.http("GET", "/whoami", auth="api_key")
def whoami(request):
    return 200, {"key": request.authorizer["keyName"]}


@app.http("GET", "/token", secrets=["CLUSTER_TOKEN"])
def token(request):
    return 200, {"length": len(app.secret("CLUSTER_TOKEN"))}
