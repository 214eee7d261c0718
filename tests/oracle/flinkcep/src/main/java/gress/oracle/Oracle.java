package gress.oracle;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.apache.flink.api.common.state.AggregatingState;
import org.apache.flink.api.common.state.AggregatingStateDescriptor;
import org.apache.flink.api.common.state.KeyedStateStore;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ReducingState;
import org.apache.flink.api.common.state.ReducingStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeutils.base.IntSerializer;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.cep.nfa.ComputationState;
import org.apache.flink.cep.nfa.NFA;
import org.apache.flink.cep.nfa.sharedbuffer.EventId;
import org.apache.flink.cep.nfa.NFAState;
import org.apache.flink.cep.nfa.aftermatch.AfterMatchSkipStrategy;
import org.apache.flink.cep.nfa.compiler.NFACompiler;
import org.apache.flink.cep.nfa.sharedbuffer.SharedBuffer;
import org.apache.flink.cep.nfa.sharedbuffer.SharedBufferAccessor;
import org.apache.flink.cep.pattern.Pattern;
import org.apache.flink.cep.pattern.conditions.IterativeCondition;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ArrayNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * Differential oracle for Gress's CEP (issue 13). Reads one JSON batch on stdin,
 * {"cases": [{"id", "pattern": a Gress PatternSpec with field conditions, "events": [{"ts", ...fields}]}]},
 * runs each case through FlinkCEP's own NFA as FlinkCEP's CepOperator drives it in event time (events in
 * timestamp order; before each timestamp advanceTime, then process; at the end of input advanceTime to
 * Long.MAX_VALUE, the final watermark), and prints one JSON line per case, in order: {"id", "matches":
 * [{step: [event index]}], "heldAtEnd" (see run), "timeouts": [{"events": {step: [event index]}, "at"}]}, or {"id", "error"} when FlinkCEP rejects the pattern, or {"id",
 * "crash"} when its NFA throws while running the events, or {"id", "budgetExceeded"}. Events travel through the NFA as
 * their index in the case, so the shared buffer stores plain ints; conditions read the fields from the case's events.
 *
 * <p>Budget: FlinkCEP's NFA does not terminate on some patterns (a repeated group whose steps are all optional: its
 * createDecisionGraph or findFinalStateAfterProceed goes round the group's proceed edges without taking an event).
 * Each case therefore runs under a budget, set by the batch's optional "budget": {"evaluations", "millis"}. A cap on
 * the condition evaluations catches a loop that evaluates conditions within milliseconds (ordinary cases of the
 * test's grammar need under a thousand); the case is reported as {"id", "budgetExceeded"} and the batch goes on, as
 * it does after an OutOfMemoryError. A loop that evaluates no condition cannot be interrupted safely, so a watchdog
 * thread reports the case over its time limit and halts the JVM with exit code 3; the caller starts a new JVM for
 * the cases after it.
 */
public final class Oracle {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** The events of the case being run; conditions look fields up here by index. */
  private static List<JsonNode> current = List.of();

  /** Condition evaluations so far in the current case, its cap, and its deadline (System.nanoTime). */
  private static long evaluations;
  private static long maxEvaluations = 100_000;
  private static long deadline = Long.MAX_VALUE;
  /** Whether FlinkCEP accepted the current case's pattern: what is thrown after that is a crash, not a rejection. */
  private static boolean compiled;
  /** The case being run and when it started (System.nanoTime); the watchdog reads them under OUT. */
  private static JsonNode runningId;
  private static long startedAt;
  /** Guards the output lines and the running case between the main thread and the watchdog. */
  private static final Object OUT = new Object();
  private static final PrintStream STDOUT = new PrintStream(System.out, false, StandardCharsets.UTF_8);
  static final int HALTED = 3;

  /** Thrown from a condition when the case has used up its budget; FlinkCEP passes it up through process. */
  static final class BudgetExceeded extends RuntimeException {
    private static final long serialVersionUID = 1L;

    BudgetExceeded(String what) {
      super(what, null, false, false);
    }
  }

  public static void main(String[] args) throws Exception {
    JsonNode batch = JSON.readTree(new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)));
    JsonNode budget = batch.path("budget");
    maxEvaluations = budget.path("evaluations").asLong(100_000);
    long millis = budget.path("millis").asLong(5_000);
    startWatchdog(millis);
    for (JsonNode c : batch.get("cases")) {
      ObjectNode r = JSON.createObjectNode();
      r.set("id", c.get("id"));
      synchronized (OUT) {
        runningId = c.get("id");
        startedAt = System.nanoTime();
      }
      evaluations = 0;
      compiled = false;
      // ORACLE_PROGRESS=1 names each case on stderr as it starts, to find one that hangs the JVM.
      if (System.getenv("ORACLE_PROGRESS") != null) System.err.println("case " + c.get("id"));
      deadline = System.nanoTime() + millis * 1_000_000L;
      try {
        ObjectNode res = run(c.get("pattern"), c.get("events"));
        r.set("matches", res.get("matches"));
        r.set("heldAtEnd", res.get("heldAtEnd"));
        r.set("timeouts", res.get("timeouts"));
      } catch (RuntimeException e) {
        // FlinkCEP wraps what a condition throws ("Failure happened in filter function").
        Throwable t = e;
        while (t != null && !(t instanceof BudgetExceeded)) t = t.getCause();
        if (t != null) r.put("budgetExceeded", t.getMessage());
        else failed(r, e);
        if (System.getenv("ORACLE_TRACE") != null) e.printStackTrace();
      } catch (OutOfMemoryError e) {
        // The case's NFA state is garbage once run returns, so the batch can go on.
        r.put("budgetExceeded", "the heap (" + Runtime.getRuntime().maxMemory() / (1 << 20) + " MB) after " + evaluations + " condition evaluations");
      } catch (Exception | StackOverflowError e) {
        failed(r, e);
        if (System.getenv("ORACLE_TRACE") != null) e.printStackTrace();
      }
      synchronized (OUT) {
        runningId = null;
        STDOUT.println(JSON.writeValueAsString(r));
        STDOUT.flush();
      }
    }
    // The shared buffer's cache-statistics timer is a non-daemon thread: end the JVM explicitly.
    System.exit(0);
  }

  /** Reports the running case once it is past its time limit plus a grace period, and halts the JVM. */
  private static void startWatchdog(long millis) {
    Thread t = new Thread(() -> {
      while (true) {
        try {
          Thread.sleep(Math.max(10, Math.min(200, millis / 10)));
        } catch (InterruptedException e) {
          return;
        }
        synchronized (OUT) {
          if (runningId == null || System.nanoTime() - startedAt < (millis + millis / 2) * 1_000_000L) continue;
          ObjectNode r = JSON.createObjectNode();
          r.set("id", runningId);
          r.put("budgetExceeded", "the time limit (" + millis + " ms) in a loop that evaluates no condition, after " + evaluations + " condition evaluations; the JVM was halted");
          STDOUT.println(r.toString());
          STDOUT.flush();
          Runtime.getRuntime().halt(HALTED);
        }
      }
    }, "oracle-watchdog");
    t.setDaemon(true);
    t.start();
  }

  /** A rejected pattern ("error"), or a crash with FlinkCEP's innermost cause and where it was thrown. */
  private static void failed(ObjectNode r, Throwable e) {
    if (!compiled) {
      r.put("error", e.getClass().getSimpleName() + ": " + e.getMessage());
      return;
    }
    Throwable root = e;
    while (root.getCause() != null) root = root.getCause();
    String where = "";
    for (StackTraceElement at : root.getStackTrace()) {
      if (at.getClassName().startsWith("org.apache.flink.cep.")) {
        where = " in " + at.getClassName().replace("org.apache.flink.cep.", "") + "." + at.getMethodName();
        break;
      }
    }
    r.put("crash", root.getClass().getSimpleName() + where);
  }

  /**
   * Runs one case: "matches" are what the NFA emitted; "heldAtEnd" are completed matches that FlinkCEP still
   * holds after the final watermark (under a skip strategy other than noSkip it releases a completed match
   * only once every partial match that started earlier is finished; without within, those never finish).
   */
  static ObjectNode run(JsonNode spec, JsonNode events) throws Exception {
    List<JsonNode> evs = new ArrayList<>();
    events.forEach(evs::add);
    current = evs;
    Pattern<Integer, Integer> p = build(spec);
    // With timeout handling on, as CepOperator runs it when a timeout function is given: advanceTime then
    // returns the partial matches whose within passed.
    NFA<Integer> nfa = NFACompiler.compileFactory(p, true).createNFA();
    NFAState state = nfa.createInitialNFAState();
    compiled = true;
    SharedBuffer<Integer> buffer = new SharedBuffer<>(new MemoryStore(), IntSerializer.INSTANCE);
    AfterMatchSkipStrategy skip = p.getAfterMatchSkipStrategy();
    ArrayNode matches = JSON.createArrayNode();
    ArrayNode timeouts = JSON.createArrayNode();
    for (int i = 0; i < evs.size(); i++) {
      long ts = evs.get(i).get("ts").asLong();
      try (SharedBufferAccessor<Integer> acc = buffer.getAccessor()) {
        Tuple2<Collection<Map<String, List<Integer>>>, Collection<Tuple2<Map<String, List<Integer>>, Long>>> adv = nfa.advanceTime(acc, state, ts, skip);
        emit(matches, adv.f0);
        timedOut(timeouts, adv.f1);
      }
      try (SharedBufferAccessor<Integer> acc = buffer.getAccessor()) {
        emit(matches, nfa.process(acc, state, i, ts, skip, () -> ts));
      }
    }
    try (SharedBufferAccessor<Integer> acc = buffer.getAccessor()) {
      Tuple2<Collection<Map<String, List<Integer>>>, Collection<Tuple2<Map<String, List<Integer>>, Long>>> end =
          nfa.advanceTime(acc, state, Long.MAX_VALUE, skip);
      emit(matches, end.f0);
      timedOut(timeouts, end.f1);
    }
    ArrayNode held = JSON.createArrayNode();
    try (SharedBufferAccessor<Integer> acc = buffer.getAccessor()) {
      for (ComputationState cs : state.getCompletedMatches()) {
        for (Map<String, List<EventId>> path : acc.extractPatterns(cs.getPreviousBufferEntry(), cs.getVersion())) {
          emit(held, List.of(acc.materializeMatch(path)));
        }
      }
    }
    ObjectNode res = JSON.createObjectNode();
    res.set("matches", matches);
    res.set("heldAtEnd", held);
    res.set("timeouts", timeouts);
    return res;
  }

  /** Timed-out partial matches as {"events": {step: [event index]}, "at": the time they timed out}. */
  private static void timedOut(ArrayNode out, Collection<Tuple2<Map<String, List<Integer>>, Long>> found) {
    for (Tuple2<Map<String, List<Integer>>, Long> t : found) {
      ObjectNode o = out.addObject();
      ArrayNode one = JSON.createArrayNode();
      emit(one, List.of(t.f0));
      o.set("events", one.get(0));
      o.put("at", t.f1);
    }
  }

  private static void emit(ArrayNode out, Collection<Map<String, List<Integer>>> found) {
    for (Map<String, List<Integer>> m : found) {
      ObjectNode o = out.addObject();
      for (Map.Entry<String, List<Integer>> e : new TreeMap<>(m).entrySet()) {
        ArrayNode a = o.putArray(e.getKey());
        e.getValue().forEach(a::add);
      }
    }
  }

  static Pattern<Integer, Integer> build(JsonNode spec) {
    Pattern<Integer, Integer> p = sequence(spec.get("steps"), skipOf(spec.get("skip")));
    if (spec.has("within") && !spec.get("within").isNull()) p = p.within(Duration.ofMillis(spec.get("within").asLong()));
    return p;
  }

  /** The steps as one FlinkCEP pattern; a step with "group" becomes a GroupPattern of its own steps. */
  static Pattern<Integer, Integer> sequence(JsonNode steps, AfterMatchSkipStrategy skip) {
    Pattern<Integer, Integer> p = null;
    for (JsonNode st : steps) {
      if (st.has("within")) throw new IllegalArgumentException("per-step within is not in the oracle's grammar yet");
      String name = st.get("name").asText();
      String kind = st.get("kind").asText();
      if (st.has("group")) {
        Pattern<Integer, Integer> inner = sequence(st.get("group"), AfterMatchSkipStrategy.noSkip());
        if (p == null) p = Pattern.begin(inner, skip);
        else if (kind.equals("strict")) p = p.next(inner);
        else if (kind.equals("relaxed")) p = p.followedBy(inner);
        else if (kind.equals("any")) p = p.followedByAny(inner);
        else throw new IllegalArgumentException("a group cannot be joined with " + kind);
      } else if (p == null) {
        p = Pattern.begin(name, skip);
      } else {
        switch (kind) {
          case "strict": p = p.next(name); break;
          case "relaxed": p = p.followedBy(name); break;
          case "any": p = p.followedByAny(name); break;
          case "notNext": p = p.notNext(name); break;
          case "notFollowedBy": p = p.notFollowedBy(name); break;
          default: throw new IllegalArgumentException("unknown step kind " + kind);
        }
      }
      if (st.has("where")) p = p.where(new Cond(st.get("where")));
      JsonNode q = st.get("quantifier");
      int min = q.get("min").asInt();
      boolean unbounded = q.get("max").isNull();
      int max = unbounded ? -1 : q.get("max").asInt();
      if (unbounded) p = min == 1 ? p.oneOrMore() : p.timesOrMore(min);
      else if (min != 1 || max != 1) p = min == max ? p.times(min) : p.times(min, max);
      boolean looping = unbounded || max > 1;
      if (looping) {
        String inner = q.get("inner").asText();
        if (inner.equals("strict")) p = p.consecutive();
        else if (inner.equals("any")) p = p.allowCombinations();
      }
      if (q.get("optional").asBoolean()) p = p.optional();
      if (q.get("greedy").asBoolean()) p = p.greedy();
      if (st.has("until")) p = p.until(new Cond(st.get("until")));
    }
    if (p == null) throw new IllegalArgumentException("a pattern needs at least one step");
    return p;
  }

  static AfterMatchSkipStrategy skipOf(JsonNode s) {
    switch (s.get("kind").asText()) {
      case "noSkip": return AfterMatchSkipStrategy.noSkip();
      case "skipToNext": return AfterMatchSkipStrategy.skipToNext();
      case "skipPastLastEvent": return AfterMatchSkipStrategy.skipPastLastEvent();
      case "skipToFirst": return AfterMatchSkipStrategy.skipToFirst(s.get("step").asText());
      case "skipToLast": return AfterMatchSkipStrategy.skipToLast(s.get("step").asText());
      default: throw new IllegalArgumentException("unknown skip strategy " + s);
    }
  }

  /** A Gress ConditionSpec over the event's fields: {field, op, value}, {and}, {or}, {not}. */
  static final class Cond extends IterativeCondition<Integer> {
    private static final long serialVersionUID = 1L;
    private final String spec;
    private transient JsonNode node;

    Cond(JsonNode spec) {
      this.spec = spec.toString();
      this.node = spec;
    }

    @Override
    public boolean filter(Integer index, Context<Integer> ctx) throws Exception {
      if (++evaluations > maxEvaluations) throw new BudgetExceeded(maxEvaluations + " condition evaluations");
      if ((evaluations & 1023) == 0 && System.nanoTime() > deadline) {
        throw new BudgetExceeded("the time limit, after " + evaluations + " condition evaluations");
      }
      if (node == null) node = JSON.readTree(spec);
      return eval(node, current.get(index));
    }

    static boolean eval(JsonNode c, JsonNode ev) {
      if (c.has("and")) {
        for (JsonNode x : c.get("and")) if (!eval(x, ev)) return false;
        return true;
      }
      if (c.has("or")) {
        for (JsonNode x : c.get("or")) if (eval(x, ev)) return true;
        return false;
      }
      if (c.has("not")) return !eval(c.get("not"), ev);
      if (!c.has("field")) throw new IllegalArgumentException("unsupported condition " + c);
      JsonNode v = ev.get(c.get("field").asText());
      JsonNode want = c.get("value");
      String op = c.get("op").asText();
      switch (op) {
        case "==": return v != null && same(v, want);
        case "!=": return v == null || !same(v, want);
        case "in":
          for (JsonNode w : want) if (v != null && same(v, w)) return true;
          return false;
        default:
          if (v == null || !v.isNumber() || !want.isNumber()) return false;
          int cmp = Double.compare(v.asDouble(), want.asDouble());
          switch (op) {
            case "<": return cmp < 0;
            case "<=": return cmp <= 0;
            case ">": return cmp > 0;
            case ">=": return cmp >= 0;
            default: throw new IllegalArgumentException("unknown op " + op);
          }
      }
    }

    private static boolean same(JsonNode a, JsonNode b) {
      if (a.isNumber() && b.isNumber()) return a.asDouble() == b.asDouble();
      return a.equals(b);
    }
  }

  /** Heap keyed state for one key: the shared buffer's map states, as a test state backend keeps them. */
  static final class MemoryStore implements KeyedStateStore {
    @Override
    public <T> ValueState<T> getState(ValueStateDescriptor<T> d) {
      return new ValueState<T>() {
        T v;
        public T value() { return v; }
        public void update(T x) { v = x; }
        public void clear() { v = null; }
      };
    }

    @Override
    public <UK, UV> MapState<UK, UV> getMapState(MapStateDescriptor<UK, UV> d) {
      return new MemoryMap<>();
    }

    @Override
    public <T> ListState<T> getListState(ListStateDescriptor<T> d) {
      throw new UnsupportedOperationException("list state");
    }

    @Override
    public <T> ReducingState<T> getReducingState(ReducingStateDescriptor<T> d) {
      throw new UnsupportedOperationException("reducing state");
    }

    @Override
    public <IN, ACC, OUT> AggregatingState<IN, OUT> getAggregatingState(AggregatingStateDescriptor<IN, ACC, OUT> d) {
      throw new UnsupportedOperationException("aggregating state");
    }
  }

  static final class MemoryMap<K, V> implements MapState<K, V> {
    private final Map<K, V> m = new HashMap<>();
    public V get(K k) { return m.get(k); }
    public void put(K k, V v) { m.put(k, v); }
    public void putAll(Map<K, V> all) { m.putAll(all); }
    public void remove(K k) { m.remove(k); }
    public boolean contains(K k) { return m.containsKey(k); }
    public Iterable<Map.Entry<K, V>> entries() { return m.entrySet(); }
    public Iterable<K> keys() { return m.keySet(); }
    public Iterable<V> values() { return m.values(); }
    public Iterator<Map.Entry<K, V>> iterator() { return m.entrySet().iterator(); }
    public boolean isEmpty() { return m.isEmpty(); }
    public void clear() { m.clear(); }
  }
}
