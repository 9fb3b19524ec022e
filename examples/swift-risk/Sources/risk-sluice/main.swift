import Risk
import SluiceRuntime

// Sluice's command line (serve, dev, invoke, dlq, render, …) with `risk` beside the built-in
// functions: `risk-sluice serve risk` runs it as a function of its own.
var app = SluiceApplication()
app.register("risk", Risk.self)
await app.run()
