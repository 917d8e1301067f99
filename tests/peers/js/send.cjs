// The OpenTelemetry JS SDK as a sender for refinery_py's tests: OTLP/HTTP in the SDK's own JSON
// (numbers as JSON numbers, IDs as hex, chunked request bodies) or protobuf encoding, bytes
// refinery_py did not write. Sends two traces, a failed checkout and a health check, and prints
// their trace IDs.
//
// Usage: node send.cjs http://127.0.0.1:PORT/v1/traces json|protobuf
const { context, trace, SpanKind, SpanStatusCode } = require("@opentelemetry/api");
const { TracerProvider, SimpleSpanProcessor } = require("@opentelemetry/sdk-trace");
const encodings = {
  json: () => require("@opentelemetry/exporter-trace-otlp-http"),
  protobuf: () => require("@opentelemetry/exporter-trace-otlp-proto"),
};
const { OTLPTraceExporter } = encodings[process.argv[3] || "json"]();
const { resourceFromAttributes } = require("@opentelemetry/resources");

const exporter = new OTLPTraceExporter({ url: process.argv[2] });
const provider = new TracerProvider({
  resource: resourceFromAttributes({ "service.name": "checkout-js", "customer.id": "acme" }),
  spanProcessors: [new SimpleSpanProcessor({ exporter })],
});
const tracer = provider.getTracer("refinery-py-tests", "1.0.0");

const root = tracer.startSpan("POST /checkout", {
  kind: SpanKind.SERVER,
  attributes: {
    "http.route": "/checkout",
    "cart.size": 3,
    "cart.total": 12.5,
    "app.flagged": false,
    "cart.items": ["book", "pen"],
    "cart.quantities": [1, 2],
  },
});
const child = tracer.startSpan(
  "charge card",
  { kind: SpanKind.CLIENT, attributes: { "payment.provider": "stripe" } },
  trace.setSpan(context.active(), root),
);
child.addEvent("retry", { attempt: 2 });
child.setStatus({ code: SpanStatusCode.ERROR, message: "card declined" });
child.end();
root.end();

const health = tracer.startSpan("GET /health", {
  kind: SpanKind.SERVER,
  attributes: { "http.route": "/health" },
});
health.end();

provider
  .forceFlush()
  .then(() => provider.shutdown())
  .then(() => {
    const ids = { checkout: root.spanContext().traceId, health: health.spanContext().traceId };
    console.log(JSON.stringify(ids));
  })
  .catch((error) => {
    console.error("export failed:", error);
    process.exit(2);
  });
