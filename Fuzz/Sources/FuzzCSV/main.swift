import FuzzSupport
import SluiceUploads

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCSV(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let body = UnsafeRawBufferPointer(start: data, count: size)
    Fuzzing.checkUpload({ CSVDecoder(limits: Fuzzing.limits) }, body)
    Fuzzing.checkUpload({ CSVDecoder(limits: Fuzzing.limits, mapping: Fuzzing.csvMapping) }, body)
    Fuzzing.checkCSVMapping(body)
    return 0
}
