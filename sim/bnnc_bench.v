// Test bench around a bnnc streaming top (`bnnc_top`): driver, monitor, scoreboard and timing,
// clock by clock inside the simulator (a Python bench costs ~0.5 ms per clock, too slow for
// streams of pixels). Two drivers run it: cocotb (tb_stream.py) only runs the clock and waits
// for `done`; the compiled C++ main (bench_main.cpp) does the same without VPI. runner.py writes
// the input files and reads the results.
//
// Files in the working directory: inputs.hex and expected.hex (one hex word per transfer,
// element i at bits [i*w +: w]), read one word at a time as the run consumes them (so the build
// does not depend on the run's length); the bench writes outputs.hex (the checked run's output
// transfers) and results.txt ("key value" lines). Plusargs: in_words / out_words (transfers of
// the checked run), in_beats / out_beats (transfers per frame), timing_frames, check,
// backpressure, seed, limit (clocks per phase before giving up).
//
// Phase 1, checked: after each input transfer the driver pauses 1-4 clocks with probability
// 3/10, and out_ready is high with probability 6/10 in each clock (unless backpressure=0).
// Phase 2, timing: the first timing_frames frames again through the idle pipeline, no pauses,
// out_ready high. It notes the latency of the first frame (its first input transfer to its last
// output transfer) and the clocks of the last output transfers of frame timing_frames/2 and of
// the last frame (the steady state: the pipeline has filled by then).
module bnnc_bench #(
    parameter IN_W  = 8,
    parameter OUT_W = 8
) (
    input  wire clk,
    output reg  done
);
    integer in_words, out_words, in_beats, out_beats, timing_frames, check, backpressure, seed, limit;
    integer inputs_file, expected_file, outputs_file, results_file, scanned;
    reg [IN_W-1:0]  next_in;  // the input word of transfer `sent`
    reg [OUT_W-1:0] want_out; // the expected word of transfer `received`

    reg              rst;
    reg              in_valid;
    reg  [IN_W-1:0]  in_data;
    reg              out_ready;
    wire             in_ready;
    wire             out_valid;
    wire [OUT_W-1:0] out_data;

    bnnc_top dut (
        .clk(clk), .rst(rst),
        .in_valid(in_valid), .in_ready(in_ready), .in_data(in_data),
        .out_valid(out_valid), .out_ready(out_ready), .out_data(out_data)
    );

    reg [31:0] random;  // xorshift32: a seed fixes the whole run
    integer phase;      // 0: reset, 1: checked run, 2: timing run, 3: done
    integer clock, start, words, outs, sent, received, pause, frames;
    integer first_in, last_out, cycles, latency, end_half, end_last, errors, first_error, timeout;
    reg [OUT_W-1:0] got, want;
    reg [63:0] first_error_time;  // simulation time ($time, the bench's time unit) of the first mismatch

    initial begin
        if (!$value$plusargs("in_words=%d", in_words)) in_words = 0;
        if (!$value$plusargs("out_words=%d", out_words)) out_words = 0;
        if (!$value$plusargs("in_beats=%d", in_beats)) in_beats = 1;
        if (!$value$plusargs("out_beats=%d", out_beats)) out_beats = 1;
        if (!$value$plusargs("timing_frames=%d", timing_frames)) timing_frames = 0;
        if (!$value$plusargs("check=%d", check)) check = 0;
        if (!$value$plusargs("backpressure=%d", backpressure)) backpressure = 1;
        if (!$value$plusargs("seed=%d", seed)) seed = 1;
        if (!$value$plusargs("limit=%d", limit)) limit = 1000000;
        inputs_file = $fopen("inputs.hex", "r");
        expected_file = check != 0 ? $fopen("expected.hex", "r") : 0;
        outputs_file = $fopen("outputs.hex", "w");
        next_in = {IN_W{1'b0}}; want_out = {OUT_W{1'b0}};
        if (in_words > 0)
            scanned = $fscanf(inputs_file, "%h\n", next_in);
        if (check != 0 && out_words > 0)
            scanned = $fscanf(expected_file, "%h\n", want_out);
        random = 32'h2545f491 ^ seed;
        done = 1'b0; rst = 1'b1; in_valid = 1'b0; in_data = {IN_W{1'b0}}; out_ready = 1'b0;
        phase = 0; clock = 0; start = 0; words = 0; outs = 0; sent = 0; received = 0; pause = 0; frames = 0;
        first_in = -1; last_out = -1; cycles = 0; latency = -1; end_half = -1; end_last = -1;
        errors = 0; first_error = -1; timeout = 0; got = {OUT_W{1'b0}}; want = {OUT_W{1'b0}};
        first_error_time = 64'd0;
    end

    always @(posedge clk) begin
        clock = clock + 1;
        random = random ^ (random << 13);
        random = random ^ (random >> 17);
        random = random ^ (random << 5);
        if (phase == 0 && clock == 4) begin
            rst <= 1'b0;
            phase = 1; start = clock; words = in_words; outs = out_words;
        end else if (phase == 1 || phase == 2) begin
            // the transfers of this edge
            if (in_valid && in_ready) begin
                sent = sent + 1;
                if (sent < words)
                    scanned = $fscanf(inputs_file, "%h\n", next_in);
                if (first_in < 0)
                    first_in = clock;
                if (phase == 1 && random % 10 < 3)
                    pause = 1 + (random >> 8) % 4;
            end else if (pause > 0)
                pause = pause - 1;
            if (out_valid && out_ready) begin
                if (phase == 1) begin
                    $fwrite(outputs_file, "%h\n", out_data);
                    if (check != 0 && out_data !== want_out) begin
                        if (errors == 0) begin
                            first_error = received; got = out_data; want = want_out; first_error_time = $time;
                        end
                        errors = errors + 1;
                    end
                    if (check != 0 && received + 1 < outs)
                        scanned = $fscanf(expected_file, "%h\n", want_out);
                end
                received = received + 1;
                last_out = clock;
                if (phase == 2 && received % out_beats == 0) begin
                    frames = frames + 1;
                    if (frames == 1)
                        latency = clock - first_in;
                    if (frames == timing_frames / 2 + 1)
                        end_half = clock;
                    if (frames == timing_frames)
                        end_last = clock;
                end
            end
            // the end of a phase
            if (clock - start > limit) begin
                timeout = phase;
                phase = 3;
            end else if (received == outs) begin
                if (phase == 1)
                    cycles = outs > 0 ? last_out - first_in + 1 : 0;
                if (phase == 1 && timing_frames > 0) begin
                    phase = 2; start = clock; words = timing_frames * in_beats; outs = timing_frames * out_beats;
                    sent = 0; received = 0; pause = 0; first_in = -1;
                    scanned = $rewind(inputs_file);
                    scanned = $fscanf(inputs_file, "%h\n", next_in);
                end else
                    phase = 3;
            end
            // what the next clock offers
            in_valid <= phase != 3 && sent < words && pause == 0;
            in_data <= next_in;
            out_ready <= phase == 2 || backpressure == 0 || (random >> 16) % 10 < 6;
            if (phase == 3) begin
                results_file = $fopen("results.txt", "w");
                $fwrite(results_file, "sent %0d\nreceived %0d\ncycles %0d\nlatency %0d\nend_half %0d\nend_last %0d\n",
                        sent, received, cycles, latency, end_half, end_last);
                $fwrite(results_file, "errors %0d\nfirst_error %0d\ngot %h\nwant %h\ntimeout %0d\nfirst_error_time %0d\nclocks %0d\n",
                        errors, first_error, got, want, timeout, first_error_time, clock);
                $fclose(results_file);
                $fclose(outputs_file);
                $fclose(inputs_file);
                if (check != 0)
                    $fclose(expected_file);
                done <= 1'b1;
            end
        end
    end
endmodule
