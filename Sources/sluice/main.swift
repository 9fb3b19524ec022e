import SluiceRuntime

// The `sluice` binary: the built-in functions and nothing else. A package of your own adds its
// functions the same way (SluiceApplication; docs/functions.md, "In Swift").
await SluiceApplication().run()
