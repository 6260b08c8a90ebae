// Hand-written bnnc primitive: lets a frame (BEATS transfers) start at most every INTERVAL
// clocks, the pipeline's steady-state interval. It never slows the pipeline down (nothing can
// go faster), but it keeps every unit on the schedule the timing model computed, which is what
// makes the FIFO depths and the manifest's timing exact. Data passes through untouched.
module bnnc_pacer #(
    parameter W        = 8,
    parameter BEATS    = 1,
    parameter INTERVAL = 2
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
    localparam BW = BEATS > 1 ? $clog2(BEATS) : 1;
    localparam GW = $clog2(INTERVAL);
    localparam integer LAST_I = BEATS - 1;
    localparam integer OPEN_I = INTERVAL - 1;
    localparam [BW-1:0] LAST_BEAT = LAST_I[BW-1:0];
    localparam [GW-1:0] OPEN = OPEN_I[GW-1:0];
    localparam [BW-1:0] B1   = 1;
    localparam [GW-1:0] G1   = 1;

    reg [BW-1:0] beat;  // index of the next transfer within its frame
    reg [GW-1:0] since; // clocks since the current frame started, saturating at INTERVAL - 1
    wire open = beat != {BW{1'b0}} || since == OPEN;
    assign out_valid = in_valid && open;
    assign in_ready  = out_ready && open;
    assign out_data  = in_data;
    wire pass = in_valid && in_ready;

    always @(posedge clk) begin
        if (rst) begin
            beat  <= {BW{1'b0}};
            since <= OPEN;
        end else begin
            if (pass)
                beat <= beat == LAST_BEAT ? {BW{1'b0}} : beat + B1;
            if (pass && beat == {BW{1'b0}})
                since <= {GW{1'b0}};
            else if (since != OPEN)
                since <= since + G1;
        end
    end
endmodule
