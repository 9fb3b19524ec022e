import FuzzSupport
import SluiceUploads

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzXML(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    Fuzzing.checkUpload({ XMLDecoder(limits: Fuzzing.limits) }, UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
