// Hand-written bnnc primitive: the AXI4-Lite status registers of an AXI4-Stream wrapped design.
// Every output is a flip-flop. Reads and writes take one transfer at a time (enough for a
// status block); an address outside the map reads 0. Register map (32-bit words, byte offsets):
//   0x00 ID             "BNNC" (0x424e4e43)
//   0x04 VERSION        register map version (major << 16 | minor)
//   0x08 DESIGN         first 32 bits of the SHA-256 of the design's RTL: which network this is
//   0x0c CONTROL        write bit 0 = 1: clear the counters below (reads 0)
//   0x10 FRAMES_IN      frames that entered bnnc_top
//   0x14 FRAMES_OUT     frames sent on m_axis
//   0x18 LAST_INTERVAL  clocks between the last two frames leaving bnnc_top
//   0x1c LAST_LATENCY   clocks from a frame's first transfer into bnnc_top to its result leaving it
//   0x20 FRAMING_ERRORS s_axis transfers with TLAST not at the frame's end, or TKEEP not all ones
//   0x24 CYCLES_PER_FRAME  the timing model's interval (constant)
//   0x28 LATENCY        the timing model's latency (constant)
//   0x2c IN_BEATS       s_axis transfers per frame (constant)
module bnnc_axil_status #(
    parameter [31:0] DESIGN           = 32'd0,
    parameter [31:0] CYCLES_PER_FRAME = 32'd1,
    parameter [31:0] LATENCY          = 32'd1,
    parameter [31:0] IN_BEATS         = 32'd1
) (
    input  wire        clk,
    input  wire        rst,        // synchronous, active high
    // AXI4-Lite slave
    input  wire [5:0]  awaddr,
    input  wire        awvalid,
    output reg         awready,
    input  wire [31:0] wdata,
    input  wire [3:0]  wstrb,
    input  wire        wvalid,
    output reg         wready,
    output wire [1:0]  bresp,
    output reg         bvalid,
    input  wire        bready,
    input  wire [5:0]  araddr,
    input  wire        arvalid,
    output reg         arready,
    output reg  [31:0] rdata,
    output wire [1:0]  rresp,
    output reg         rvalid,
    input  wire        rready,
    // the values it shows
    input  wire [31:0] frames_in,
    input  wire [31:0] frames_out,
    input  wire [31:0] last_interval,
    input  wire [31:0] last_latency,
    input  wire [31:0] framing_errors,
    output reg         clear       // one clock, on a write of 1 to CONTROL bit 0
);
    localparam [31:0] ID      = 32'h424e4e43;
    localparam [31:0] VERSION = 32'h00010000;

    assign bresp = 2'b00;  // OKAY: writes elsewhere are ignored
    assign rresp = 2'b00;

    reg [31:0] value;
    always @(*) begin
        case (araddr[5:2])
            4'h0: value = ID;
            4'h1: value = VERSION;
            4'h2: value = DESIGN;
            4'h4: value = frames_in;
            4'h5: value = frames_out;
            4'h6: value = last_interval;
            4'h7: value = last_latency;
            4'h8: value = framing_errors;
            4'h9: value = CYCLES_PER_FRAME;
            4'ha: value = LATENCY;
            4'hb: value = IN_BEATS;
            default: value = 32'd0;
        endcase
    end

    // The address and data are taken on the edge where awready/wready are high (the master holds
    // them valid until then); the response follows on the next edge, as AXI requires.
    always @(posedge clk) begin
        clear <= 1'b0;
        if (rst) begin
            awready <= 1'b0;
            wready  <= 1'b0;
            bvalid  <= 1'b0;
            arready <= 1'b0;
            rvalid  <= 1'b0;
        end else begin
            if (bvalid && bready)
                bvalid <= 1'b0;
            if (awready) begin
                awready <= 1'b0;
                wready  <= 1'b0;
                bvalid  <= 1'b1;
                clear   <= awaddr[5:2] == 4'h3 && wstrb[0] && wdata[0];
            end else if (awvalid && wvalid && !bvalid) begin
                awready <= 1'b1;
                wready  <= 1'b1;
            end
            if (rvalid && rready)
                rvalid <= 1'b0;
            if (arready) begin
                arready <= 1'b0;
                rvalid  <= 1'b1;
                rdata   <= value;
            end else if (arvalid && !rvalid) begin
                arready <= 1'b1;
            end
        end
    end

    wire unused = &{1'b0, awaddr[1:0], araddr[1:0], wdata[31:1], wstrb[3:1]};
endmodule
