import FuzzSupport
import SluiceUploads

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSONArray(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    Fuzzing.checkUpload({ JSONArrayDecoder(limits: Fuzzing.limits) }, UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
