// Hand-written bnnc primitive: a fall-through FIFO of DEPTH words between two pipeline units.
// When it is empty a word passes straight through in the same clock, so it adds no latency;
// it only holds words the downstream unit is not ready for yet. The timing model
// (compiler/backends/verilog_timing.py) sizes DEPTH so that the upstream unit never waits.
module bnnc_fifo #(
    parameter W     = 8,
    parameter DEPTH = 2
) (
    input  wire         clk,
    input  wire         rst,        // synchronous, active high
    input  wire         in_valid,
    output wire         in_ready,
    input  wire [W-1:0] in_data,
    output wire         out_valid,
    input  wire         out_ready,
    output wire [W-1:0] out_data
);
    localparam AW = DEPTH > 1 ? $clog2(DEPTH) : 1;  // address bits
    localparam CW = $clog2(DEPTH + 1);              // count bits: 0 .. DEPTH
    localparam integer LAST_I = DEPTH - 1;
    localparam integer FULL_I = DEPTH;
    localparam [AW-1:0] LAST = LAST_I[AW-1:0];
    localparam [CW-1:0] FULL = FULL_I[CW-1:0];
    localparam [AW-1:0] A1   = 1;
    localparam [CW-1:0] C1   = 1;

    reg [W-1:0]  words [0:DEPTH-1];
    reg [AW-1:0] head, tail;
    reg [CW-1:0] count;
    wire empty = count == {CW{1'b0}};
    assign in_ready  = count != FULL;
    assign out_valid = !empty || in_valid;
    assign out_data  = empty ? in_data : words[head];
    wire push = in_valid && in_ready && !(empty && out_ready);  // a word passing through is not stored
    wire pop  = out_ready && !empty;

    always @(posedge clk) begin
        if (rst) begin
            head  <= {AW{1'b0}};
            tail  <= {AW{1'b0}};
            count <= {CW{1'b0}};
        end else begin
            if (push)
                tail <= tail == LAST ? {AW{1'b0}} : tail + A1;
            if (pop)
                head <= head == LAST ? {AW{1'b0}} : head + A1;
            if (push && !pop)
                count <= count + C1;
            else if (pop && !push)
                count <= count - C1;
        end
        if (push)
            words[tail] <= in_data;
    end
endmodule
