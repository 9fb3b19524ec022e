import FuzzSupport
import SluiceUploads

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNDJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    Fuzzing.checkUpload({ NDJSONDecoder(limits: Fuzzing.limits) }, UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
