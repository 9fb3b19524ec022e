import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    Fuzzing.checkJSON(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
