// A user's own Node.js pipeline: publish a minimal request to gapstream's requests topic with kafkajs, read its
// result back from the results topic, print the result as one JSON line on stdout.
// usage: node roundtrip.mjs BOOTSTRAP[,BOOTSTRAP…] TOPIC_PREFIX REQUEST_ID USER_ID PROMPT [TIMEOUT_S]
import { Kafka, logLevel } from 'kafkajs';

const [bootstrap, prefix, requestId, userId, prompt, timeoutS = '120'] = process.argv.slice(2);
if (!prompt) {
  console.error('usage: node roundtrip.mjs BOOTSTRAP TOPIC_PREFIX REQUEST_ID USER_ID PROMPT [TIMEOUT_S]');
  process.exit(64);
}

// kafkajs logs to stdout by default; keep stdout for the result.
const logCreator = () => ({ namespace, level, log }) => {
  if (level <= logLevel.WARN) console.error(`kafkajs ${namespace}: ${log.message}`);
};
const kafka = new Kafka({ clientId: 'gapstream-outside-node', brokers: bootstrap.split(','), logLevel: logLevel.WARN, logCreator });
const consumer = kafka.consumer({ groupId: `outside-node-${requestId}`, maxWaitTimeInMs: 100 });
const producer = kafka.producer({ allowAutoTopicCreation: false });

const timer = setTimeout(() => {
  console.error(`no result for ${requestId} within ${timeoutS} s`);
  process.exit(2);
}, Number(timeoutS) * 1000);

let deliver;
const result = new Promise((resolve) => { deliver = resolve; });

await consumer.connect();
// A new group starting at the beginning cannot miss a result that lands before it has joined.
await consumer.subscribe({ topic: `${prefix}results`, fromBeginning: true });
await consumer.run({
  eachMessage: async ({ message }) => {
    if (message.key && message.key.toString() === requestId) deliver(JSON.parse(message.value.toString()));
  },
});

await producer.connect();
await producer.send({
  topic: `${prefix}requests`,
  messages: [{ key: requestId, value: JSON.stringify({ request_id: requestId, user_id: userId, prompt }) }],
});

const record = await result;
clearTimeout(timer);
process.stdout.write(JSON.stringify(record) + '\n');
await producer.disconnect();
await consumer.disconnect();
