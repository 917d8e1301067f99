// The OpenTelemetry Java SDK as a sender for refinery_py's tests: OTLP/HTTP protobuf written by the
// Java SDK's own marshalers (one per memory mode), optionally gzip-compressed. Sends two traces, a
// failed checkout and a health check, and prints their trace IDs as JSON.
//
// Usage: java -cp 'lib/*' Send.java http://127.0.0.1:PORT/v1/traces reusable|immutable gzip|none
import io.opentelemetry.api.common.AttributeKey;
import io.opentelemetry.api.common.Attributes;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanKind;
import io.opentelemetry.api.trace.StatusCode;
import io.opentelemetry.api.trace.Tracer;
import io.opentelemetry.context.Context;
import io.opentelemetry.exporter.otlp.http.trace.OtlpHttpSpanExporter;
import io.opentelemetry.sdk.common.export.MemoryMode;
import io.opentelemetry.sdk.resources.Resource;
import io.opentelemetry.sdk.trace.SdkTracerProvider;
import io.opentelemetry.sdk.trace.export.SimpleSpanProcessor;
import java.util.List;
import java.util.concurrent.TimeUnit;

public class Send {
  public static void main(String[] args) {
    OtlpHttpSpanExporter exporter =
        OtlpHttpSpanExporter.builder()
            .setEndpoint(args[0])
            .setMemoryMode(args[1].equals("reusable") ? MemoryMode.REUSABLE_DATA : MemoryMode.IMMUTABLE_DATA)
            .setCompression(args[2])
            .build();
    Resource resource =
        Resource.create(
            Attributes.of(
                AttributeKey.stringKey("service.name"), "checkout-java",
                AttributeKey.stringKey("customer.id"), "acme"));
    SdkTracerProvider provider =
        SdkTracerProvider.builder()
            .setResource(resource)
            .addSpanProcessor(SimpleSpanProcessor.create(exporter))
            .build();
    Tracer tracer = provider.get("refinery-py-tests", "1.0.0");

    Span root =
        tracer.spanBuilder("POST /checkout")
            .setSpanKind(SpanKind.SERVER)
            .setAttribute("http.route", "/checkout")
            .setAttribute("cart.size", 3L)
            .setAttribute("cart.total", 12.5)
            .setAttribute("app.flagged", false)
            .setAttribute(AttributeKey.stringArrayKey("cart.items"), List.of("book", "pen"))
            .setAttribute(AttributeKey.longArrayKey("cart.quantities"), List.of(1L, 2L))
            .startSpan();
    Span child =
        tracer.spanBuilder("charge card")
            .setParent(Context.current().with(root))
            .setSpanKind(SpanKind.CLIENT)
            .setAttribute("payment.provider", "stripe")
            .startSpan();
    child.addEvent("retry", Attributes.of(AttributeKey.longKey("attempt"), 2L));
    child.setStatus(StatusCode.ERROR, "card declined");
    child.end();
    root.end();

    Span health =
        tracer.spanBuilder("GET /health")
            .setSpanKind(SpanKind.SERVER)
            .setAttribute("http.route", "/health")
            .startSpan();
    health.end();

    boolean sent = provider.forceFlush().join(30, TimeUnit.SECONDS).isSuccess();
    provider.shutdown().join(30, TimeUnit.SECONDS);
    if (!sent) {
      System.err.println("export failed");
      System.exit(2);
    }
    System.out.println(
        "{\"checkout\": \"" + root.getSpanContext().getTraceId()
            + "\", \"health\": \"" + health.getSpanContext().getTraceId() + "\"}");
  }
}
