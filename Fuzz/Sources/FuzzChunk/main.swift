import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzChunk(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    Fuzzing.checkChunk(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
