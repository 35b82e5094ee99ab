import CRdKafka
import Synchronization

/// One client's topic names by librdkafka topic handle, so that hot loops do not decode the same C string for every
/// message. librdkafka keeps a client's topic objects until the client is destroyed, and the cache dies with the
/// client's context: a handle in it always names the topic it was first seen with.
final class TopicNameCache: Sendable {
    private let names = Mutex<[UInt: String]>([:])

    /// The name of the topic behind `topic` (an `rd_kafka_topic_t *` of this cache's client).
    func name(of topic: OpaquePointer?) -> String {
        guard let topic else { return "" }
        let key = UInt(bitPattern: topic)
        if let name = names.withLock({ $0[key] }) { return name }
        let name = String(cString: rd_kafka_topic_name(topic))
        names.withLock { $0[key] = name }
        return name
    }
}
